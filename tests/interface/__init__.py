"""Tests of the command line, the Python API, docs, structure, hostile input and data safety."""
