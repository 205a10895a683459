"""Tests of tools/bench (see tools/bench/__init__.py)."""
