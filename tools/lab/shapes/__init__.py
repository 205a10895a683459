"""The shapes world: a synthetic captioned data set for our small default HART model.

captions.py  scene spec <-> caption text (the only words the text tokenizer knows)
render.py    scene spec -> anti-aliased RGB image (numpy only)
dataset.py   deterministic examples from (seed, index), held-out captions, .npy cache
checker.py   GenEval-style check of an image against its caption (palette segmentation)
grid.py      PNG grids of examples or samples (`tools/py lab.shapes.grid`)

May import: nothing outside lab.shapes (numpy only, no torch): the world stands on its own.
"""
