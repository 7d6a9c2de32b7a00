"""A run folder on disk: its layout and checks (folder.py), checkpoints, and env.json.

Its own package so that training (`engine`) and evaluation (`evaluation`) both read run folders
without importing each other's package the other way round.
"""
