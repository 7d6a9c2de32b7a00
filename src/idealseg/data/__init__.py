"""Dataset folders and their I/O: importers, NIfTI reading, channels, patients, splits, folds, label
budgets, the plan, the in-memory slice store."""
