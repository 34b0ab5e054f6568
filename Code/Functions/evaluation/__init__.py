"""Evaluation layer: scoring predictions against masks and evaluating a finished run."""
