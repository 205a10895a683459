"""The Python tests, one subpackage per package: tests/hart, tests/export, tests/convert,
tests/lab, tests/bench. Run from tools/: /usr/bin/python3 -m unittest discover -s tests -t .
(or `node tests/run-all.mjs python` from the repository root).
"""
