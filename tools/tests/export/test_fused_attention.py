"""Fused attention in the exported transformer step (com.microsoft MultiHeadAttention) and the
float16 KV cache of fp16 step graphs: the graphs equal the PyTorch step in onnxruntime-node and
in onnxruntime-web's WASM build, for empty and non-empty caches."""
import math
import os
import shutil
import tempfile
import unittest

import numpy as np
import onnx
import torch
from onnx import TensorProto

from hart.config import get_config
from hart.model import HartModel
from export.graphs import TransformerGraph, build_graphs, fit_preview, sample_inputs
from export.writer import export_package
from tests.export.test_export import FP16_TOLERANCE, FP32_TOLERANCE, run_ort, write_case

# Empty cache (the text step), a cache with a step longer than 32 new tokens (onnxruntime's
# WebGPU provider switches from its split-K decode kernel to its prefill kernel at 32), and an
# odd batch of rows.
DIMS = [{"N": 2, "L": 8, "P": 0}, {"N": 2, "L": 40, "P": 13}, {"N": 6, "L": 4, "P": 9}]


def graph_file(package, manifest, variant):
    return os.path.join(package, manifest["graphs"]["transformer"][variant]["path"])


class FusedAttentionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hart-fused-")
        cls.model = HartModel.random(get_config("tiny"), 0)
        cls.package = os.path.join(cls.tmp, "package")
        cls.manifest = export_package(cls.model, cls.package, fp16=True, seed=0, log=lambda *_: None,
                                      attention="fused")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @torch.no_grad()
    def test_fused_step_equals_plain_step(self):
        t, c = self.model.transformer, self.model.config
        g = torch.Generator().manual_seed(5)
        for n, length, p in ((2, 8, 0), (4, 3, 6)):
            x = torch.randn(n, length, c.width, generator=g)
            cos, sin = torch.randn(n, length, c.head_dim, generator=g), torch.randn(n, length, c.head_dim, generator=g)
            past = [tuple(torch.randn(n, c.heads, p, c.head_dim, generator=g) for _ in range(2)) for _ in range(c.depth)]
            plain, plain_kv = t.step(x, cos, sin, past)
            fused, fused_kv = t.step(x, cos, sin, past, fused=True)
            self.assertLess((plain - fused).abs().max().item(), 1e-6)
            for a, b in zip(plain_kv, fused_kv):
                self.assertEqual(a[0].shape, (n, c.heads, p + length, c.head_dim))
                self.assertLess(max((a[0] - b[0]).abs().max().item(), (a[1] - b[1]).abs().max().item()), 1e-6)

    def test_fused_needs_a_cache(self):
        t, c = self.model.transformer, self.model.config
        x, tables = torch.zeros(2, 3, c.width), torch.zeros(2, 3, c.head_dim)
        with self.assertRaises(ValueError):
            t.step(x, tables, tables, None, fused=True)
        with self.assertRaises(ValueError):
            TransformerGraph(self.model, "flash")

    def test_graph_has_one_multihead_attention_per_block(self):
        c = self.model.config
        for variant in ("fp32", "fp16"):
            proto = onnx.load(graph_file(self.package, self.manifest, variant))
            ops = [n.op_type for n in proto.graph.node]
            self.assertEqual(ops.count("MultiHeadAttention"), c.depth, variant)
            self.assertNotIn("Softmax", ops, variant)
            node = next(n for n in proto.graph.node if n.op_type == "MultiHeadAttention")
            self.assertEqual(node.domain, "com.microsoft")
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            self.assertEqual(attrs["num_heads"], c.heads)
            # HART's scale, not the operator's default 1/√hd.
            self.assertAlmostEqual(attrs["scale"], 0.25 / math.sqrt(c.head_dim), places=7)
            # The cache goes in and out of the operator as it is (float16 in the fp16 graph).
            self.assertEqual(list(node.input[6:8]), ["past_key_0", "past_value_0"])
            self.assertEqual(list(node.output[1:]), ["present_key_0", "present_value_0"])

    def test_kv_cache_io_is_float16_only_in_the_fp16_graph(self):
        c = self.model.config
        for variant, want in (("fp32", TensorProto.FLOAT), ("fp16", TensorProto.FLOAT16)):
            proto = onnx.load(graph_file(self.package, self.manifest, variant))
            types = {v.name: v.type.tensor_type.elem_type for v in list(proto.graph.input) + list(proto.graph.output)}
            for i in range(c.depth):
                for name in (f"past_key_{i}", f"past_value_{i}", f"present_key_{i}", f"present_value_{i}"):
                    self.assertEqual(types[name], want, f"{variant} {name}")
            # The rest of the contract stays float32.
            for name in ("x", "rope_cos", "rope_sin", "hidden"):
                self.assertEqual(types[name], TensorProto.FLOAT, f"{variant} {name}")

    @torch.no_grad()
    def check_runtime(self, runtime):
        folder = os.path.join(self.tmp, f"parity-{runtime}")
        os.makedirs(folder)
        graph = next(g for g in build_graphs(self.model, fit_preview(self.model, torch.Generator()), "fused")
                     if g.key == "transformer")
        generator = torch.Generator().manual_seed(7)
        cases, limits = [], {}
        for i, dims in enumerate(DIMS):
            inputs = sample_inputs(graph, self.model, dims, generator)
            outputs = graph.module(*inputs)
            for variant, limit in (("fp32", FP32_TOLERANCE), ("fp16", FP16_TOLERANCE)):
                name = f"transformer.{i}.{variant}"
                half = graph.fp16_io if variant == "fp16" else ()
                cases.append(write_case(name, graph_file(self.package, self.manifest, variant), graph, inputs,
                                        outputs, folder, half))
                limits[name] = limit
        worst = {}
        for name, result in run_ort(cases, folder, runtime).items():
            self.assertTrue(result["ok"], f"{runtime} {name}: {result.get('error')}")
            variant = name.rsplit(".", 1)[1]
            for output, stats in result["outputs"].items():
                self.assertLessEqual(stats["rel"], limits[name], f"{runtime} {name} {output}: {stats}")
                if output.startswith("present"):
                    self.assertEqual(stats["dtype"], "float16" if variant == "fp16" else "float32")
                worst[variant] = max(worst.get(variant, 0.0), stats["rel"])
        print(f"\n  fused transformer in {runtime}: max relative error fp32 {worst['fp32']:.2e}, "
              f"fp16 {worst['fp16']:.2e}")

    def test_equals_pytorch_in_onnxruntime_node(self):
        self.check_runtime("node")

    def test_equals_pytorch_in_onnxruntime_web_wasm(self):
        self.check_runtime("wasm")


if __name__ == "__main__":
    unittest.main()
