"""Reading the files our own scripts write: training checkpoints, model files, tokenizer files.

Besides tensors they hold configs, optimizer and RNG state (Python and numpy objects), so they
are read with the full unpickler. torch 2.6 and later (a lent GPU machine has one) load with
weights_only by default and would refuse them; Debian's torch 1.13 here reads them either way.
Downloaded checkpoints never come through here: hart/checkpoint.py reads those weights-only.
"""
import torch


def load_saved(path: str):
    return torch.load(path, map_location="cpu", weights_only=False)
