"""Tests of the training methods."""
