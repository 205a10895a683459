"""Move a generator's weights off a remote GPU machine in parts, and join them into a model file.

Such a machine may hand back only a few files of at most 16 MiB each, and our model files (29 MB:
the generator in float32 plus the whole tokenizer) exceed that. What training changed is only
the generator (transformer with its diffusion head, text encoder), so that is what travels,
as a float32 .npz cut into parts; here it is joined with a template model file that holds
the exact tokenizer (e.g. runs/tokenizer/tokenizer.pt's, inside the model file it was
trained from).

    HART_PYTHON=python3 tools/py lab.gpu.weights_parts pack RUN_FOLDER OUT_FOLDER   # on the GPU machine
    tools/py lab.gpu.weights_parts join PARTS_FOLDER NAME TEMPLATE.pt OUT.pt
"""
import glob
import io
import json
import os
import pathlib
import sys
from typing import List

import numpy as np
import torch

PARTS = ("transformer", "text_encoder")
CHUNK = 15 * 1024 * 1024


def pack(model_path: str, out: str, chunk: int = CHUNK) -> List[str]:
    """Write model_path's generator weights as <name>.npz.part0, part1, … in out."""
    blob = torch.load(model_path, map_location="cpu", weights_only=False)
    arrays = {f"{part}/{k}": v.detach().cpu().float().numpy() if v.dtype.is_floating_point else v.cpu().numpy()
              for part in PARTS for k, v in blob[part].items()}
    arrays["meta"] = np.array(json.dumps({"step": int(blob["step"]), "elapsed_s": float(blob["elapsed_s"]),
                                          "config": blob["config"]}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    name = os.path.splitext(os.path.basename(model_path))[0]
    paths = []
    for i in range(0, len(data), chunk):
        paths.append(os.path.join(out, f"{name}.npz.part{i // chunk}"))
        with open(paths[-1], "wb") as f:
            f.write(data[i:i + chunk])
    return paths


def join(folder: str, name: str, template: str, out: str) -> dict:
    """The model file `template` with the packed generator weights <name>.npz.part* of folder
    (their config, step and training time too), saved to out. Returns the meta."""
    parts = sorted(glob.glob(os.path.join(folder, f"{name}.npz.part*")), key=lambda p: int(p.rsplit("part", 1)[1]))
    if not parts:
        raise SystemExit(f"no {name}.npz.part* in {folder}")
    data = b"".join(pathlib.Path(p).read_bytes() for p in parts)
    arrays = np.load(io.BytesIO(data))
    meta = json.loads(str(arrays["meta"]))
    blob = torch.load(template, map_location="cpu", weights_only=False)
    for part in PARTS:
        state = {k.split("/", 1)[1]: torch.from_numpy(arrays[k].copy()) for k in arrays.files
                 if k.startswith(part + "/")}
        if set(state) != set(blob[part]):
            raise SystemExit(f"{part}: the parts and the template hold different weights "
                             f"({sorted(set(state) ^ set(blob[part]))[:4]} …)")
        blob[part] = {k: state[k].to(blob[part][k].dtype) for k in blob[part]}
    blob["config"], blob["step"], blob["elapsed_s"] = meta["config"], meta["step"], meta["elapsed_s"]
    torch.save(blob, out)
    return meta


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pack"] and len(argv) == 3:
        run, out = argv[1:]
        # The final model and the two latest snapshots: what a timed-out run still has.
        models = sorted(glob.glob(os.path.join(run, "snap-*min.pt")))[-2:]
        models += [p for p in [os.path.join(run, "model.pt")] if os.path.exists(p)]
        for path in models:
            print(f"packed {path} into {len(pack(path, out))} part(s)")
    elif argv[:1] == ["join"] and len(argv) == 5:
        meta = join(*argv[1:])
        print(f"{argv[4]}: step {meta['step']}, {meta['elapsed_s'] / 60:.2f} min")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
