"""Importers turn one kind of source into a dataset folder; nothing downstream knows which."""
