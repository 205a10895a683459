"""The preview map of a converted package, as the engine fits it (src/cli/fitPreview.ts).

A converted package has two producers: this converter and the TypeScript import
(src/engine/import/). The preview graph's latent -> RGB map is fitted against the package's own
decoder, and a fit through torch and one through ONNX Runtime differ in their last bits. So both
write the engine's fit: the converter writes its package, asks the engine for the map of that
package, and writes it into the preview graphs' weight files, whose sha256 in manifest.json it
then updates. On one machine both producers then give the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Callable, Tuple

import numpy as np
import onnx

from export.package import sha256_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIT_SCRIPT = os.path.join(REPO, "src", "cli", "fitPreview.ts")


class PreviewFitError(RuntimeError):
    pass


def engine_preview_map(package_dir: str) -> Tuple[np.ndarray, np.ndarray]:
    """([3, Cv] weight, [3] bias) float32, fitted by the engine against the package's decoder."""
    args = ["node", "--import", "tsx", FIT_SCRIPT, "--package", os.path.abspath(package_dir)]
    # tsx is resolved from the working directory: the repository's node_modules.
    result = subprocess.run(args, cwd=REPO, capture_output=True, check=False)
    if result.returncode != 0:
        raise PreviewFitError(f"fitting the preview map with {FIT_SCRIPT} failed: "
                              f"{result.stderr.decode(errors='replace').strip()[-2000:]}")
    fitted = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return np.asarray(fitted["weight"], dtype=np.float32), np.asarray(fitted["bias"], dtype=np.float32)


def _write_map(out_dir: str, graph_file: str, weight: np.ndarray, bias: np.ndarray) -> None:
    """Overwrites the map's bytes in the graph's external data, where the graph points."""
    proto = onnx.load(os.path.join(out_dir, graph_file), load_external_data=False)
    for tensor in proto.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        dims = tuple(tensor.dims)
        if dims == (weight.shape[0], weight.shape[1], 1, 1):
            value = weight.reshape(dims)
        elif dims == bias.shape:
            value = bias
        else:
            raise PreviewFitError(f"{graph_file}: weight {tensor.name} {list(dims)} is no part of a preview map")
        dtype = {onnx.TensorProto.FLOAT: "<f4", onnx.TensorProto.FLOAT16: "<f2"}.get(tensor.data_type)
        if dtype is None:
            raise PreviewFitError(f"{graph_file}: weight {tensor.name} has data type {tensor.data_type}")
        raw = np.ascontiguousarray(value, dtype=dtype).tobytes()
        if len(raw) != int(info["length"]):
            raise PreviewFitError(f"{graph_file}: {tensor.name} takes {info['length']} bytes, the map {len(raw)}")
        with open(os.path.join(out_dir, info["location"]), "r+b") as f:
            f.seek(int(info.get("offset", 0)))
            f.write(raw)


def refit_preview(out_dir: str, log: Callable[[str], None] = print) -> None:
    """Replaces the preview map of the package in `out_dir` by the engine's fit."""
    weight, bias = engine_preview_map(out_dir)
    manifest_path = os.path.join(out_dir, "manifest.json")
    with open(manifest_path, encoding="utf-8") as f:
        text = f.read()
    manifest = json.loads(text)
    hashes = {entry["path"]: entry["sha256"] for entry in manifest["files"]}
    for variant in manifest["graphs"]["preview"].values():
        _write_map(out_dir, variant["path"], weight, bias)
        for path in variant.get("externalData", []):
            # A hash is 64 hex digits: replacing its text keeps the manifest's layout as written.
            text = text.replace(f'"{hashes[path]}"', f'"{sha256_file(os.path.join(out_dir, path))}"')
    with open(manifest_path, "w", encoding="utf-8") as f:
        f.write(text)
    log("  preview map: fitted by the engine against the written decoder")
