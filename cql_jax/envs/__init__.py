"""Evaluation environments."""
