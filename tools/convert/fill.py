"""A model package from a skeleton and the published folders, through the weight map alone.

    tools/py convert.fill --skeleton SKELETON --hart HART_DIR --qwen QWEN_DIR --out PACKAGE_DIR
        [--text-encoder-bits 4|8|32]

The reference for importers in other languages: it follows docs/model-package.md "Skeletons and
weight maps" step by step (checks, sources, segments, the manifest template filled as text)
and traces nothing. The preview map is the engine's fit, as in the converter (preview_fit.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from convert import checkpoint as ckpt
from convert import converter as conv
from convert.preview_fit import refit_preview
from convert.weight_map import Context, WeightMapError, tensor_bytes

VARIANTS = {4: "int4", 8: "int8", 32: "fp32"}


class FillError(ValueError):
    pass


def _root(rules: dict, hart_dir: str, qwen_dir: str) -> str:
    return hart_dir if rules["root"] == "hart" else qwen_dir


def check_configs(weights: dict, hart_dir: str, qwen_dir: str) -> Dict[str, dict]:
    files: Dict[str, dict] = {}
    for check in weights["configs"]:
        path = os.path.join(_root(check, hart_dir, qwen_dir), check["file"])
        if path not in files:
            files[path] = ckpt.read_json(path)
        config = files[path]
        if check["field"] in config:
            value = config[check["field"]]
        elif "default" in check:
            value = check["default"]
        else:
            raise FillError(f"{check['file']} lacks {check['field']}")
        if not _json_equal(value, check["expected"]):
            raise FillError(f"{check['file']}: {check['field']} is {json.dumps(value)}, "
                            f"this model expects {json.dumps(check['expected'])}")
    return files


def _json_equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return a == b


def read_source(name: str, rules: dict, hart_dir: str, qwen_dir: str,
                log: Callable[[str], None] = print) -> Dict[str, torch.Tensor]:
    """One source's tensors by published name, checked against its key list (docs §5.3)."""
    folder = os.path.join(_root(rules, hart_dir, qwen_dir), rules["folder"])
    path = ckpt.find_weights(folder, preferred=tuple(f for f in rules["files"] if f not in ckpt.WEIGHT_FILES))
    base = os.path.basename(path)
    if rules.get("warnUnlessPrefix") and not base.startswith(rules["warnUnlessPrefix"]):
        log(f"warning: no {rules['files'][0]} in {folder}; using {base}")
    log(f"reading {path}")
    raw = ckpt.read_state_dict(path)
    for check in rules.get("checks", []):
        if check["key"] in raw and raw[check["key"]].numel() != check["numel"]:
            raise ckpt.CheckpointError(f"{rules['what']}: {check['key']} has {raw[check['key']].numel()} positions "
                                       f"but config.json's context_token and patch_nums give {check['numel']}")
    keys = [k for k in raw if not any(re.search(p, k) for p in rules["dropStored"])]
    prefix = rules["prefix"]
    named: Dict[str, str] = {}          # normalized name -> stored name
    if prefix and prefix["when"] == "any":
        if any(k.startswith(prefix["text"]) for k in keys):
            for k in keys:
                if k.startswith(prefix["text"]):
                    named[k] = k
                elif not any(re.search(p, k) for p in rules["dropUnprefixed"]):
                    named[k] = k
        else:
            named = {prefix["text"] + k: k for k in keys}
    elif prefix and prefix["when"] == "each":
        named = {(k if k.startswith(prefix["text"]) else prefix["text"] + k): k for k in keys}
    else:
        named = {k: k for k in keys}
    named = {n: k for n, k in named.items() if not any(re.search(p, n) for p in rules["drop"])}
    strip = (lambda n: n[len(prefix["text"]):] if n.startswith(prefix["text"]) else n) if prefix else (lambda n: n)
    expected = {strip(k): torch.Size(shape) for k, shape in rules["keys"].items()}
    ckpt.match_state(expected, {strip(n): raw[k] for n, k in named.items()}, f"{rules['what']} ({base})")
    return {n: raw[k] for n, k in named.items()}


def fill_manifest_text(template: str, prefix_ids: List[int], pad_id: int, files: List[dict]) -> str:
    """The template with its nulls replaced textually, in order (docs §5.5)."""
    ids = "[]" if not prefix_ids else "[\n" + ",\n".join(" " * 6 + str(i) for i in prefix_ids) + "\n    ]"
    out = template.replace('"prefixIds": null', '"prefixIds": ' + ids, 1)
    out = out.replace('"padId": null', f'"padId": {pad_id}', 1)
    pieces = out.split('"files": [', 1)
    head, body = pieces
    for entry in files:
        # one entry at a time: its path, then its own bytes/sha256 fields
        anchor = f'"path": {json.dumps(entry["path"])},'
        at = body.index(anchor)
        end = body.index("}", at)
        block = body[at:end]
        block = block.replace('"bytes": null', f'"bytes": {entry["bytes"]}', 1)
        block = block.replace('"sha256": null', f'"sha256": "{entry["sha256"]}"', 1)
        body = body[:at] + block + body[end:]
    return head + '"files": [' + body


def fill(skeleton: str, hart_dir: str, qwen_dir: str, out_dir: str, bits: Optional[int] = None,
         log: Callable[[str], None] = print) -> str:
    started = time.time()
    with open(os.path.join(skeleton, "weights.json"), encoding="utf-8") as f:
        weights = json.load(f)
    if weights.get("format") != 1:
        raise FillError(f"{skeleton}/weights.json: unknown format {weights.get('format')!r}")
    variants = weights["variants"]
    if bits is None:
        name = "int4" if "int4" in variants or len(variants) != 1 else next(iter(variants))
    else:
        name = VARIANTS.get(bits)
    if name not in variants:
        raise FillError(f"the skeleton has no {name} text encoder variant (it has {', '.join(variants)})")
    variant = variants[name]

    configs = check_configs(weights, hart_dir, qwen_dir)
    text = weights["text"]
    prefix_ids = conv.tokenize(text["systemPrompt"], os.path.join(qwen_dir, text["tokenizer"]))[:text["window"]]
    if len(prefix_ids) != len(text["prefixIds"]):
        raise FillError(f"{qwen_dir}/tokenizer.json gives the system prompt {len(prefix_ids)} tokens; "
                        f"this skeleton was made for {len(text['prefixIds'])}")
    pad_id = ckpt.pad_token_id(qwen_dir)

    sources: Dict[str, Dict[str, torch.Tensor]] = {}

    def source(name_: str, key: str) -> np.ndarray:
        if name_ not in sources:
            sources[name_] = read_source(name_, weights["sources"][name_], hart_dir, qwen_dir, log)
        return sources[name_][key].float().numpy()

    def preview():
        # Written as zeros here and replaced by the engine's fit once the decoder is written,
        # as the converter does (preview_fit.py).
        channels = int(configs[os.path.join(hart_dir, "tokenizer/config.json")]["z_channels"])
        return np.zeros((3, channels), np.float32), np.zeros(3, np.float32)

    with open(os.path.join(skeleton, "constants.bin"), "rb") as f:
        ctx = Context(source, f.read(), preview)
    for key in ("llm", "tokenizer", "qwen"):
        source(key, next(iter(weights["sources"][key]["keys"])))   # every check before any writing

    with open(os.path.join(skeleton, variant["manifest"]), encoding="utf-8") as f:
        template = f.read()
    manifest = json.loads(template)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for entry in manifest["files"]:
        path = entry["path"]
        target = os.path.join(out_dir, path)
        if path in variant["copy"]:
            shutil.copyfile(os.path.join(skeleton, variant["copy"][path]), target)
        elif path in variant["files"] or path in weights["files"]:
            spec = variant["files"].get(path) or weights["files"][path]
            write_weight_file(target, spec, ctx)
        elif path == "tokenizer.json":
            shutil.copyfile(os.path.join(qwen_dir, "tokenizer.json"), target)
        else:
            raise FillError(f"{variant['manifest']}: nothing in the skeleton makes {path}")
        written.append({"path": path, "bytes": os.path.getsize(target), "sha256": conv.sha256_file(target)})
        if entry["bytes"] is not None and entry["bytes"] != written[-1]["bytes"]:
            raise FillError(f"{path}: wrote {written[-1]['bytes']} bytes, the template says {entry['bytes']}")
    nulls = [w for w, e in zip(written, manifest["files"]) if e["bytes"] is None or e["sha256"] is None]
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        f.write(fill_manifest_text(template, prefix_ids, pad_id, nulls))
    refit_preview(out_dir, log)
    log(f"wrote {out_dir} ({name}) in {time.time() - started:.0f} s")
    return out_dir


def write_weight_file(path: str, spec: dict, ctx: Context) -> None:
    with open(path, "wb") as f:
        at = 0
        for seg in spec["segments"]:
            if seg["offset"] < at:
                raise FillError(f"{os.path.basename(path)}: segment {seg['name']} overlaps the one before")
            data = tensor_bytes(seg["expr"], ctx, seg["dtype"], seg["shape"])
            if len(data) != seg["length"]:
                raise FillError(f"{os.path.basename(path)}: {seg['name']} is {len(data)} bytes, the map says {seg['length']}")
            f.write(b"\0" * (seg["offset"] - at))
            f.write(data)
            at = seg["offset"] + len(data)
        f.write(b"\0" * (spec["bytes"] - at))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/py convert.fill", description=__doc__.split("\n")[0])
    parser.add_argument("--skeleton", required=True, help="folder written by tools/py convert.skeleton")
    parser.add_argument("--hart", required=True, help="folder with llm/ and tokenizer/")
    parser.add_argument("--qwen", required=True, help="Qwen2 text encoder folder")
    parser.add_argument("--out", required=True, help="package folder to write")
    parser.add_argument("--text-encoder-bits", type=int, choices=(4, 8, 32), default=None,
                        help="which of the skeleton's text encoder variants (default: int4, or the only one)")
    args = parser.parse_args(argv)
    try:
        fill(args.skeleton, args.hart, args.qwen, args.out, args.text_encoder_bits)
    except (ckpt.CheckpointError, WeightMapError, FillError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
