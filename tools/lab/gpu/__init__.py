"""One training stage on a GPU machine with a deadline.

stage.sh          render, encode and train in one call, then pack the weights into $OUT
weights_parts.py  `tools/py lab.gpu.weights_parts pack|join`: a generator's weights in parts

May import: hart, lab.
"""
