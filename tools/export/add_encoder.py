"""Add the encoder graph (image-to-image) to a package written before it existed.

  tools/py export.add_encoder --checkpoint checkpoints/hart-shapes-128.pt --package public/models/hart-shapes
  tools/py export.add_encoder --config tiny --random --seed 0 --package tests/fixtures/tiny

Only the encoder's files are written and the manifest gains their `graphs.encoder` and `files`
entries; every other file stays byte for byte as it is. A full re-export would not give them
back: the committed checkpoint keeps the transformer, text encoder and decoder in float16
(the package holds their float32 weights), while the encoder, quant_conv, codebook and φ convs
are float32 in both. The tool checks that the package's codebook and φ tables are the
checkpoint's before it writes anything, so the tokens it computes are the package's tokens.
"""
import argparse
import json
import os
import sys

import numpy as np

from hart.config import CONFIGS, get_config
from hart.model import HartModel
from export.fp16 import to_fp16
from export.graphs import build_graphs
from export.package import sha256_file, validate_package
from export.writer import build_tables, export_onnx, save_onnx


def _package_table(folder: str, manifest: dict, name: str) -> np.ndarray:
    entry = manifest["tables"][name]
    count = int(np.prod(entry["shape"]))
    data = np.fromfile(os.path.join(folder, entry["path"]), dtype="<f4", count=count, offset=entry["offset"])
    return data.reshape(entry["shape"])


def add_encoder(model: HartModel, folder: str, seed: int = 0, log=print) -> dict:
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    tables = build_tables(model)
    for name in ("codebook", "phiWeight", "phiBias"):
        if not np.array_equal(_package_table(folder, manifest, name), tables[name]):
            raise ValueError(f"{folder}: table {name} differs from the model's: the package was not written from these weights")
    graph = _encoder_graph(model)
    proto = export_onnx(graph, model, seed)
    fp16 = any("fp16" in entry for entry in manifest["graphs"].values())
    variants = {"fp32": (proto, "float32", f"{graph.file}.onnx")}
    if fp16:
        variants["fp16"] = (to_fp16(proto, half_io=graph.fp16_io), "float16", f"{graph.file}.fp16.onnx")
    entry, added = {}, []
    files = [f for f in manifest["files"] if f["path"] not in {v[2] for v in variants.values()}]
    for variant, (p, dtype, filename) in variants.items():
        save_onnx(p, folder, filename, graph.external)
        full = os.path.join(folder, filename)
        entry[variant] = {"path": filename}
        added.append({"path": filename, "bytes": os.path.getsize(full), "sha256": sha256_file(full), "dtype": dtype})
        log(f"  {filename}: {os.path.getsize(full):,} bytes")
    # Where the exporter lists them: after the other graphs' files, before tokenizer and tables.
    at = next((i for i, f in enumerate(files) if f["path"] == manifest["tokenizer"]), len(files))
    manifest["graphs"][graph.key] = entry
    manifest["files"] = files[:at] + added + files[at:]
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    validate_package(folder)
    return manifest


def _encoder_graph(model: HartModel):
    import torch
    c = model.config
    # The preview fit is not needed here: any 3×Cv map builds the list, and only the encoder is taken.
    dummy = (torch.zeros(3, c.latent_channels), torch.zeros(3))
    return next(g for g in build_graphs(model, dummy) if g.key == "encoder")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/py export.add_encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--random", action="store_true", help="random weights for --config (as tools/py export --random)")
    source.add_argument("--checkpoint", help="the weights the package was written from")
    parser.add_argument("--config", choices=sorted(CONFIGS), help="model config (with --random)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights and of the trace inputs")
    parser.add_argument("--package", required=True, help="package folder (changed in place)")
    args = parser.parse_args(argv)
    if args.random:
        if not args.config:
            parser.error("--random needs --config")
        model = HartModel.random(get_config(args.config), args.seed)
    else:
        model = HartModel.from_checkpoint(args.checkpoint)
    try:
        add_encoder(model.eval(), args.package, args.seed)
    except (ValueError, OSError) as error:
        print(f"tools/py export.add_encoder: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
