"""Tests of dataset import, patients, label budgets, physical space."""
