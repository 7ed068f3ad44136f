"""Tests against the running kernel's tracefs (root only; see conftest.py)."""
