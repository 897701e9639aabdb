"""Modules exported from the notebooks in nbs/ by notebook2script.py."""
