"""Export a HART model package (docs/model-package.md) from random or trained weights.

  tools/py export --config tiny --random --seed 0 --out DIR
  tools/py export --checkpoint runs/hart/model.pt --out public/models/hart-shapes

A checkpoint is a torch.save'd dict {"config", "transformer", "tokenizer", "text_encoder"}
(see hart/model.py). --golden also writes the sampler's golden cases (tests/fixtures).
"""
import argparse
import dataclasses
import os
import shutil
import sys
import time

from hart.config import CONFIGS, get_config
from hart.model import HartModel
from hart.transformer import ATTENTION_KINDS
from export.writer import export_package

UNTRAINED = "Untrained random weights (seed {seed}): for testing the pipeline only; images are noise."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/py export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--random", action="store_true", help="random weights for --config")
    source.add_argument("--checkpoint", help="trained weights (a dict with config and state dicts)")
    parser.add_argument("--config", choices=sorted(CONFIGS), help="model config (with --random)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights and of the export's fits")
    parser.add_argument("--out", required=True, help="package folder (replaced)")
    parser.add_argument("--no-fp16", action="store_true", help="write fp32 graphs only")
    parser.add_argument("--description", help="manifest description (default: the config's)")
    parser.add_argument("--golden", action="store_true", help="also write golden.json (sampler trace) into --out")
    parser.add_argument("--attention", choices=ATTENTION_KINDS, default="plain",
                        help="transformer attention: plain (MatMul/Softmax, default) or fused "
                             "(com.microsoft MultiHeadAttention, flash attention on WebGPU)")
    parser.add_argument("--guided-scales", type=int,
                        help="sampling default: guidance on scales k < N only (0: all); default: the model's")
    args = parser.parse_args(argv)

    if args.random:
        if not args.config:
            parser.error("--random needs --config")
        model = HartModel.random(get_config(args.config), args.seed)
        description = args.description or f"{model.config.description} {UNTRAINED.format(seed=args.seed)}"
    else:
        model = HartModel.from_checkpoint(args.checkpoint)
        description = args.description
    if args.guided_scales is not None:
        model.config.sampling = dataclasses.replace(model.config.sampling, guided_scales=args.guided_scales)

    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    started = time.time()
    print(f"exporting {model.config.name} to {args.out}")
    manifest = export_package(model, args.out, fp16=not args.no_fp16, description=description, seed=args.seed,
                              attention=args.attention)
    if args.golden:
        from export.golden import write_golden
        write_golden(model, args.out)
    total = sum(f["bytes"] for f in manifest["files"])
    print(f"done in {time.time() - started:.1f} s: {len(manifest['files'])} files, {total:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
