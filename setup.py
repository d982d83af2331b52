"""For tools that still run setup.py: every piece of metadata lives in pyproject.toml."""
from setuptools import setup

setup()
