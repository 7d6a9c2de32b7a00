"""Dataset folders, importers, label budgets, the in-memory slice store and batched augmentation."""
