"""bench, the PyTorch side of `npm run bench -- --compare`: the reference sampler, timed per stage.

reference.py   the reference model of a package (checkpoint or random weights), its draws,
               and one timed generation with the engine's stage names
__main__.py    a line protocol on stdin/stdout that src/cli/compare.ts drives round by round

May import: hart (and onnx for the package's decoder weights). Nothing imports bench.
"""
