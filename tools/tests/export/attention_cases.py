"""Writes a fused-attention package and transformer-step cases for tests/engine/browser/attention.mjs.

    tools/py tests.export.attention_cases OUT_DIR

OUT_DIR/package is a tiny random package exported with --attention fused; OUT_DIR/cases.json
lists cases {name, dims, inputs: {name: {file, shape}}, expected: {name: {file, shape}}} whose
files hold raw little-endian float32 values: the PyTorch step's inputs and outputs.
"""
import json
import os
import sys

import torch

from hart.config import get_config
from hart.model import HartModel
from export.graphs import build_graphs, fit_preview, sample_inputs
from export.writer import export_package

# onnxruntime's WebGPU provider runs steps of fewer than 32 new tokens with its split-K decode
# kernels and longer ones with its prefill flash-attention kernel: both kinds, empty and full caches.
CASES = {"decode-empty": {"N": 2, "L": 8, "P": 0}, "decode": {"N": 2, "L": 4, "P": 9},
         "prefill-empty": {"N": 2, "L": 40, "P": 0}, "prefill": {"N": 2, "L": 64, "P": 21}}


@torch.no_grad()
def main(out: str) -> None:
    model = HartModel.random(get_config("tiny"), 0)
    export_package(model, os.path.join(out, "package"), fp16=True, seed=0, log=lambda *_: None, attention="fused")
    graph = next(g for g in build_graphs(model, fit_preview(model, torch.Generator().manual_seed(0)), "fused")
                 if g.key == "transformer")
    generator = torch.Generator().manual_seed(9)
    cases = []
    for name, dims in CASES.items():
        inputs = sample_inputs(graph, model, dims, generator)
        outputs = graph.module(*inputs)
        case = {"name": name, "dims": dims, "inputs": {}, "expected": {}}
        for kind, names, values in (("inputs", graph.input_names, inputs), ("expected", graph.output_names, outputs)):
            for tensor_name, value in zip(names, values):
                file = f"{name}.{tensor_name}.f32"
                value.contiguous().numpy().astype("<f4").tofile(os.path.join(out, file))
                case[kind][tensor_name] = {"file": file, "shape": list(value.shape)}
        cases.append(case)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    main(sys.argv[1])
