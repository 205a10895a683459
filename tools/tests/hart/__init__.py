"""Tests of tools/hart (see tools/hart/__init__.py)."""
