"""The manifest's `requirements` (largest GPU buffer per variant) against the exported graphs:
every intermediate tensor of the tiny package's graphs, run in onnxruntime-node at the last
scale's sizes for one image, is measured and the largest compared with the declared bytes."""
import json
import os
import shutil
import tempfile
import unittest

import numpy as np
import onnx
import torch
from onnx import helper, mapping

from hart.config import CONFIGS, get_config
from hart.model import HartModel
from hart.qwen2 import Qwen2Config
from export.graphs import build_graphs, fit_preview, sample_inputs
from export.model_budget import largest_buffers, qwen2_text_encoder_buffers, scale_steps, small_text_encoder_buffers
from export.writer import export_package
from tests.export.test_export import run_ort, write_case

ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "int64": 8, "uint8": 1, "bool": 1}


def with_every_tensor_as_output(path: str, out: str) -> None:
    """A copy of the graph (weights inline) that also returns every intermediate tensor."""
    proto = onnx.load(path)
    types = {v.name: v.type.tensor_type.elem_type
             for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    outputs = {v.name for v in proto.graph.output}
    for node in proto.graph.node:
        for name in node.output:
            if name and name not in outputs and name in types:
                proto.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
                outputs.add(name)
    onnx.save(proto, out)


class RequirementsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hart-requirements-")
        cls.config = c = get_config("tiny")
        cls.model = HartModel.random(c, 0)
        cls.package = os.path.join(cls.tmp, "package")
        cls.manifest = export_package(cls.model, cls.package, fp16=True, seed=0, log=lambda *_: None)
        length, cached = scale_steps(c)[-1]
        dims = {   # one image (two CFG rows) at the last scale
            "textEncoder": {"B": 2, "S": c.text_encoder.max_tokens}, "condition": {"N": 2, "T": c.context_tokens},
            "transformer": {"N": 2, "L": length, "P": cached}, "head": {"N": 2, "L": length},
            "scaleUpdate": {"B": 1, "pn": c.patch_nums[-2], "pn_next": c.patch_nums[-1]},
            "diffusionHead": {"B": 1, "L": length}, "decoder": {"B": 1}, "preview": {"B": 1}, "encoder": {"B": 1},
        }
        folder = os.path.join(cls.tmp, "measure")
        os.makedirs(folder)
        graphs = build_graphs(cls.model, fit_preview(cls.model, torch.Generator().manual_seed(0)))
        generator = torch.Generator().manual_seed(1)
        cases, weights = [], {}
        for graph in graphs:
            inputs = sample_inputs(graph, cls.model, dims[graph.key], generator)
            for variant in ("fp32", "fp16"):
                source = os.path.join(cls.package, cls.manifest["graphs"][graph.key][variant]["path"])
                path = os.path.join(folder, f"{graph.key}.{variant}.onnx")
                with_every_tensor_as_output(source, path)
                weights[(graph.key, variant)] = max(
                    [int(np.prod(t.dims)) * np.dtype(mapping.TENSOR_TYPE_TO_NP_TYPE[t.data_type]).itemsize
                     for t in onnx.load(path).graph.initializer] or [0])
                half = graph.fp16_io if variant == "fp16" else ()
                cases.append(write_case(f"{graph.key}.{variant}", path, graph, inputs, (), folder, half))
        cls.sizes = {}
        for name, result in run_ort(cases, folder).items():
            assert result["ok"], f"{name}: {result.get('error')}"
            key, variant = name.split(".")
            cls.sizes[(key, variant)] = {out: int(np.prod(s["shape"])) * ITEMSIZE[s["dtype"]]
                                         for out, s in result["outputs"].items()}
            cls.sizes[(key, variant)]["<largest weight>"] = weights[(key, variant)]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_manifest_declares_the_largest_tensor_of_every_variant(self):
        needs = self.manifest["requirements"]
        self.assertIs(needs["shaderF16"], False)
        for variant in ("fp32", "fp16"):
            largest = max(max(self.sizes[(key, variant)].values()) for key in self.manifest["graphs"])
            self.assertEqual(needs[variant]["maxBufferBytes"], largest, variant)
            self.assertEqual(needs[variant]["maxBindingBytes"], largest, variant)
        with open(os.path.join(self.package, "manifest.json")) as f:
            self.assertEqual(json.load(f)["requirements"], needs)

    def test_each_term_is_a_tensor_of_its_graph(self):
        c = self.config
        for variant in ("fp32", "fp16"):
            fp16 = variant == "fp16"
            want = largest_buffers(c, "plain", fp16, small_text_encoder_buffers(c, fp16))
            sizes = self.sizes[("transformer", variant)]
            scores = {size for name, size in sizes.items() if name.endswith("Softmax_output_0")}
            self.assertEqual(scores, {want["attention scores"]}, variant)
            self.assertEqual(sizes["present_key_0"], want["kv cache, one block's K or V"], variant)
            rest = [size for name, size in sizes.items()
                    if not name.endswith("Softmax_output_0") and not name.startswith(("present", "<"))]
            self.assertEqual(max(rest), max(want["transformer activations"], want["attention scores"]), variant)
            self.assertEqual(sizes["<largest weight>"], want["transformer weight"], variant)
            self.assertEqual(max(self.sizes[("decoder", variant)].values()), want["decoder activations"], variant)
            self.assertEqual(self.sizes[("head", variant)]["<largest weight>"], want["head weight"], variant)
            self.assertLessEqual(max(self.sizes[("head", variant)].values()), max(want["head logits"], want["head weight"]))
            text = max(self.sizes[("textEncoder", variant)].values())
            self.assertLessEqual(text, max(want["textEncoder weight"], want["textEncoder activations"]), variant)

    def test_fused_attention_drops_the_scores(self):
        c = CONFIGS["hart-0.7b-1024px"]
        qwen = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                           num_attention_heads=12, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6)
        text = qwen2_text_encoder_buffers(qwen, 450, 4)
        plain = largest_buffers(c, "plain", False, text)
        fused = largest_buffers(c, "fused", True, text)
        # [2 rows, 24 heads, 4096 new, 9750 keys] float32 at the last scale.
        self.assertEqual(plain["attention scores"], 2 * 24 * 4096 * 9750 * 4)
        self.assertNotIn("attention scores", fused)
        self.assertEqual(fused["kv cache, one block's K or V"], 2 * 9750 * 1536 * 2)
        # What remains largest is the decoder's 160-channel 1024² map (float32 GroupNorm terms).
        self.assertEqual(max(fused, key=fused.get), "decoder activations")
        self.assertEqual(fused["decoder activations"], 160 * 1024 * 1024 * 4)


if __name__ == "__main__":
    unittest.main()
