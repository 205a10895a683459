"""Encode the shapes cache with a trained hybrid tokenizer, once, for generator training.

    tools/py lab.encode_dataset --tokenizer runs/tokenizer/tokenizer.pt \
        --data runs/shapes-20k --out runs/generator/encoded.npz

What is stored per image: lab/data.py. Default folders are under the repository's runs/.
"""
import argparse
import os

import numpy as np

# Threads sleep instead of spinning while they wait (see lab/data.py). Read when torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

from hart.vae import load_tokenizer
from lab import REPO
from lab.data import load_or_encode
from lab.train_utils import resolve_device


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/py lab.encode_dataset", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="tokenizer.pt from lab.train_tokenizer")
    ap.add_argument("--data", default=os.path.join(REPO, "runs", "shapes-20k"))
    ap.add_argument("--out", default=os.path.join(REPO, "runs", "generator", "encoded.npz"))
    ap.add_argument("--limit", type=int, default=0, help="encode only the first N images (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (the GPU when there is one)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    tokenizer = load_tokenizer(a.tokenizer).to(resolve_device(a.device))
    encoded = load_or_encode(tokenizer, a.data, a.out, a.limit)
    print(f"{len(encoded['captions'])} images, indices {encoded['indices'].shape}, "
          f"residual {encoded['residual'].shape} (rms {np.sqrt(np.mean(np.square(encoded['residual'][:256].astype(np.float32)))):.3f})")


if __name__ == "__main__":
    main()
