"""Tests of tools/lab (see tools/lab/__init__.py)."""
