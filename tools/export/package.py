"""Validate a `hart-web-package` folder (docs/model-package.md §1): what the engine checks too.

Every problem is reported with the file it concerns, so a broken download names its culprit.
"""
import hashlib
import json
import os
from typing import Dict, List, Tuple

import onnx

FORMAT = "hart-web-package"
FORMAT_VERSION = 1
GRAPH_KEYS = ("textEncoder", "condition", "transformer", "head", "scaleUpdate", "diffusionHead", "decoder", "preview")
# Graphs a package may lack (packages written before them still load): the encoder is only
# needed to start from an image.
OPTIONAL_GRAPH_KEYS = ("encoder",)
FILE_DTYPES = {"float32", "float16", "int8", "int4", "json", "binary"}


class PackageError(ValueError):
    pass


def graph_signature(key: str, depth: int) -> Tuple[List[str], List[str]]:
    """The contract's input and output names of one graph (§3)."""
    if key == "transformer":
        past = [f"past_{kind}_{i}" for i in range(depth) for kind in ("key", "value")]
        present = [f"present_{kind}_{i}" for i in range(depth) for kind in ("key", "value")]
        return ["x", "rope_cos", "rope_sin"] + past, ["hidden"] + present
    return {
        "textEncoder": (["input_ids", "attention_mask"], ["hidden"]),
        "condition": (["context"], ["x", "head_cond"]),
        "head": (["hidden", "head_cond", "guidance"], ["logits"]),
        "scaleUpdate": (["f_hat", "tokens", "upsample", "phi_weight", "phi_bias", "downsample", "level"],
                        ["f_hat_next", "x_next"]),
        "diffusionHead": (["x", "t", "hidden", "tokens", "guidance"], ["eps", "v"]),
        "decoder": (["f_hat"], ["image"]),
        "preview": (["f_hat"], ["image"]),
        "encoder": (["image"], ["f", "tokens", "f_hat"]),
    }[key]


def _safe_path(path: str, where: str) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or ".." in path.split("/"):
        raise PackageError(f"{where}: unsafe path {path!r}")
    return path


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate_package(folder: str, check_hashes: bool = True) -> dict:
    """Return the manifest of a valid package; raise PackageError naming the bad file otherwise."""
    manifest_path = os.path.join(folder, "manifest.json")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as error:
        raise PackageError(f"manifest.json: cannot read ({error})") from error

    if manifest.get("format") != FORMAT:
        raise PackageError(f"manifest.json: unknown format {manifest.get('format')!r}")
    if manifest.get("formatVersion") != FORMAT_VERSION:
        raise PackageError(f"manifest.json: unsupported formatVersion {manifest.get('formatVersion')!r}")
    for section in ("model", "textEncoder", "sampling", "graphs", "tokenizer", "tables", "files"):
        if section not in manifest:
            raise PackageError(f"manifest.json: missing section {section!r}")

    files = _check_files(folder, manifest["files"], check_hashes)
    _check_graphs(folder, manifest, files)
    _check_tables(folder, manifest["tables"], files)
    tokenizer = _safe_path(manifest["tokenizer"], "manifest.json tokenizer")
    if tokenizer not in files:
        raise PackageError(f"{tokenizer}: not listed in files")
    try:
        with open(os.path.join(folder, tokenizer)) as f:
            json.load(f)
    except ValueError as error:
        raise PackageError(f"{tokenizer}: not valid JSON ({error})") from error
    return manifest


def _check_files(folder: str, entries: list, check_hashes: bool) -> Dict[str, dict]:
    files = {}
    for entry in entries:
        path = _safe_path(entry.get("path"), "manifest.json files")
        if entry.get("dtype") not in FILE_DTYPES:
            raise PackageError(f"{path}: unknown dtype {entry.get('dtype')!r}")
        full = os.path.join(folder, path)
        if not os.path.isfile(full):
            raise PackageError(f"{path}: missing")
        size = os.path.getsize(full)
        if size != entry.get("bytes"):
            raise PackageError(f"{path}: {size} bytes, the manifest says {entry.get('bytes')} (truncated or replaced)")
        if check_hashes:
            digest = sha256_file(full)
            if digest != entry.get("sha256"):
                raise PackageError(f"{path}: sha256 {digest} does not match the manifest's {entry.get('sha256')}")
        files[path] = entry
    return files


def _check_graphs(folder: str, manifest: dict, files: Dict[str, dict]) -> None:
    depth = manifest["model"]["depth"]
    for key in GRAPH_KEYS + OPTIONAL_GRAPH_KEYS:
        variants = manifest["graphs"].get(key)
        if key in OPTIONAL_GRAPH_KEYS and variants is None:
            continue
        if not variants or "fp32" not in variants:
            raise PackageError(f"manifest.json: graph {key!r} has no fp32 variant")
        for variant, entry in variants.items():
            if variant not in ("fp32", "fp16"):
                raise PackageError(f"manifest.json: graph {key!r} has an unknown variant {variant!r}")
            path = _safe_path(entry.get("path"), f"manifest.json graphs.{key}.{variant}")
            external = [_safe_path(p, path) for p in entry.get("externalData", [])]
            for p in [path] + external:
                if p not in files:
                    raise PackageError(f"{p}: not listed in files")
            try:
                proto = onnx.load(os.path.join(folder, path), load_external_data=False)
            except Exception as error:  # protobuf raises several types for damaged bytes
                raise PackageError(f"{path}: not a readable ONNX graph ({error})") from error
            inputs = [v.name for v in proto.graph.input]
            outputs = [v.name for v in proto.graph.output]
            if (inputs, outputs) != graph_signature(key, depth):
                raise PackageError(f"{path}: inputs {inputs} / outputs {outputs} do not match the {key} contract")
            locations = sorted({
                e.value for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                for e in t.external_data if e.key == "location"
            })
            if locations != sorted(external):
                raise PackageError(f"{path}: external data {locations} differs from the manifest's {external}")


def _check_tables(folder: str, tables: dict, files: Dict[str, dict]) -> None:
    sizes = {"float32": 4, "float16": 2, "int32": 4}
    for name, table in tables.items():
        path = _safe_path(table.get("path"), f"manifest.json tables.{name}")
        if path not in files:
            raise PackageError(f"{path}: not listed in files")
        if table.get("dtype") not in sizes or table.get("offset", -1) % 4:
            raise PackageError(f"{path}: table {name!r} has a bad dtype or an unaligned offset")
        count = 1
        for d in table["shape"]:
            count *= d
        end = table["offset"] + count * sizes[table["dtype"]]
        if end > files[path]["bytes"]:
            raise PackageError(f"{path}: table {name!r} ends at byte {end}, past the file's end")
