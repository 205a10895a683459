"""Reading the files our own scripts write (training checkpoints, model files, tokenizer files)
and the config dicts inside them.

Besides tensors they hold configs, optimizer and RNG state (Python and numpy objects), so they
are read with the full unpickler. torch 2.6 and later (as on recent GPU machines) load with
weights_only by default and would refuse them; Debian's torch 1.13 here reads them either way.
Downloaded checkpoints never come through here: convert/checkpoint.py reads those weights-only.
"""
import dataclasses

import torch


def load_saved(path: str):
    return torch.load(path, map_location="cpu", weights_only=False)


def plain(value):
    """Tuples become lists so a config dict is JSON- and torch.save-friendly."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def build_dataclass(cls, data: dict):
    """A config dataclass from its saved dict: lists (as `plain` wrote them) become tuples again."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in data.items()})
