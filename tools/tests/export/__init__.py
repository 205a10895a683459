"""Tests of tools/export (see tools/export/__init__.py)."""
