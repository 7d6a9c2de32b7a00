"""Tests of the benchmark package and the committed results it reads."""
