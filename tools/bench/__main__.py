"""The reference side of `npm run bench -- --compare`, driven line by line over stdin/stdout.

  tools/py bench --reference checkpoints/hart-shapes-128.pt --package public/models/hart-shapes \
      --prompt "a red circle" --seed 0 --draws /tmp/draws.bin

Loads the model (--reference: a checkpoint, or random:CONFIG:SEED as `tools/py export --random`
builds it), writes the seed's random draws to --draws for the engine, and prints one JSON line
{"ready": ..., "settings", "draws", "threads"}. Then each line "run" on stdin makes one image and
prints {"stages": {...ms}, "pixels": base64 RGBA}; "quit" or the end of stdin ends it.

Threads: torch.set_num_threads(--threads, default 2) for intra-op work, one inter-op thread;
the caller sets OMP_WAIT_POLICY=PASSIVE (no spinning) and OPENBLAS_NUM_THREADS=1.
"""
import argparse
import base64
import json
import sys

import torch

from hart.config import sampling_json
from hart.sampler import make_draws
from bench.reference import load_reference, timed_generate, write_draws


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/py bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="checkpoint path, or random:CONFIG:SEED")
    parser.add_argument("--package", help="the engine's package (its float32 decoder weights are used)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    parser.add_argument("--draws", required=True, help="file to write the draws to")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass                                   # already set in this process
    model = load_reference(args.reference, args.package)
    settings = model.config.sampling
    draws = make_draws(model.config, 1, args.seed, smooth=settings.smooth, residual=settings.residual)
    layout = write_draws(draws, args.draws)
    print(json.dumps({"ready": model.config.name, "settings": sampling_json(settings), "draws": layout,
                      "threads": {"intraOp": torch.get_num_threads(), "interOp": torch.get_num_interop_threads()},
                      "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
            continue
        trace, stages = timed_generate(model, args.prompt, settings, draws)
        pixels = base64.b64encode(trace.pixels[0].tobytes()).decode("ascii")
        print(json.dumps({"stages": {k: round(v, 3) for k, v in stages.items()}, "pixels": pixels}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
