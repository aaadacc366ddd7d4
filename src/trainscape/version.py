"""The version of trainscape, the one place it is written (pyproject.toml reads it)."""

__version__ = "0.13.4"
