"""Tests of the training loop, distributed training, the plan and run set-up."""
