"""Tests of the losses and augmentation."""
