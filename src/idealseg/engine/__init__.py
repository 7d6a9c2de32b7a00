"""The one training loop: device, AMP, DDP, progress, logging, checkpoint/resume, budgets."""
