"""Visualisation layer: figures (matplotlib, imported lazily) and markdown reports."""
