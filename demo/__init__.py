"""Builders of the demo zoo: real models and labelled data from files inside PyPI wheels (not in the production path)."""
