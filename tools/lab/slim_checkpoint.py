"""A model file small enough to commit (≤ 25 MB per file), to continue training from later.

    tools/py lab.slim_checkpoint runs/generator/model.pt checkpoints/hart-shapes-128.pt

The input is a model file of train_generator.py (HartModel.checkpoint() plus step and
elapsed_s). The transformer and text-encoder weights are stored in float16 (a starting point for
more training; the exported package is made from the float32 file), and so is the tokenizer's
decoder. The tokenizer's encoder, quant_conv and codebook stay float32, so encoding the data
again gives the same tokens and the encoded cache stays valid (same tokenizer_fingerprint).
`train_generator.py --resume-from` reads the result.
"""
import argparse
import os

import torch

from hart.saved import load_saved
from lab.data import ENCODING_MODULES


def _halved(state: dict, keep=()) -> dict:
    return {k: v.half() if v.is_floating_point() and not k.startswith(keep) else v for k, v in state.items()}


def slim(model_file: dict, guided_scales=None) -> dict:
    config = dict(model_file["config"])
    if guided_scales is not None:   # a sampling default chosen after training (train_generator --guided-scales)
        config["sampling"] = dict(config["sampling"], guided_scales=guided_scales)
    out = {"config": config,
           "transformer": _halved(model_file["transformer"]), "text_encoder": _halved(model_file["text_encoder"]),
           "tokenizer": _halved(model_file["tokenizer"], keep=ENCODING_MODULES),
           "step": model_file.get("step"), "elapsed_s": model_file.get("elapsed_s"),
           "weights_dtype": {"transformer": "float16", "text_encoder": "float16",
                             "tokenizer": "float32 encoder, quant_conv, quantizer; float16 decoder"}}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog='tools/py lab.slim_checkpoint', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model.pt written by train_generator.py")
    ap.add_argument("out")
    ap.add_argument("--guided-scales", type=int, help="set the sampling default: guidance on scales k < N only")
    a = ap.parse_args(argv)
    torch.save(slim(load_saved(a.model), a.guided_scales), a.out)
    print(f"wrote {a.out}: {os.path.getsize(a.out):,} bytes")


if __name__ == "__main__":
    main()
