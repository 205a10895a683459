"""Tests of tools/convert (see tools/convert/__init__.py)."""
