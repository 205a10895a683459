"""The training lab of the small default "shapes" model.

shapes/               the shapes world: captions, renderer, data set, checker, grids
data.py               encoding a shapes cache into tokens, marking object tokens (library)
encode_dataset.py     `tools/py lab.encode_dataset`: encode a cache ahead of training
train_utils.py        devices, bf16 autocast, learning-rate schedule, checkpoints, logs
train_tokenizer.py    `tools/py lab.train_tokenizer`: the hybrid tokenizer (VAE + quantizer)
generator/            training the generator: teacher inputs and RoPE cache, losses (binding
                      negatives, self-correction), data and batches, model setup
train_generator.py    `tools/py lab.train_generator`: the generator's command line
diagnosis.py          loading a trained model, generating and scoring captions (library)
evaluate.py           `tools/py lab.evaluate`: the evaluation table
diagnose_binding.py, diagnose_scales.py, diagnose_text.py   diagnostics (`tools/py lab.diagnose_…`)
slim_checkpoint.py    `tools/py lab.slim_checkpoint`: a shipped model file without training state
tokenizer_from_package.py  `tools/py lab.tokenizer_from_package`: a tokenizer back from a package
gpu/                  one training stage on a GPU machine with a deadline (stage.sh, weights_parts.py)

May import: hart, export. Nothing outside lab imports lab.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The repository root: default data and run folders (runs/…) live under it."""
