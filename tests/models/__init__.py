"""Tests of the U-Net."""
