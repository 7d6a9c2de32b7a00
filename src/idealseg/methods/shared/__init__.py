"""Pieces several methods share, each in a file named for what it does; none of them is a method."""
