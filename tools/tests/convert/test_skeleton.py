"""Skeletons and weight maps (convert/skeleton.py, convert/fill.py, convert/weight_map.py).

The stand-in of the published folders is converted by `convert` and, separately, turned into a
skeleton from its config files alone and filled from its weights: every file of the two
packages must be byte-identical, for fp16 and fp32-only packages and each text encoder variant.
That proves the weight map complete and the graph files free of weight bytes.
"""

import contextlib
import filecmp
import io
import json
import os
import shutil
import tempfile
import unittest
from collections import OrderedDict

import numpy as np
import torch

from convert import checkpoint as ckpt
from convert import converter as conv
from convert import fake_published as fake
from convert import fill as fill_mod
from convert import skeleton as sk
from convert.safetensors import save_file
from convert.weight_map import Context, Pool, WeightMapError, evaluate, level_embedding

SHARD_MB = 0.25


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs, log=lambda m: None)


def differing_files(a, b):
    names = sorted(set(os.listdir(a)) | set(os.listdir(b)))
    return [n for n in names if not (os.path.isfile(os.path.join(a, n)) and os.path.isfile(os.path.join(b, n))
                                     and filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False))]


class SkeletonFillTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="hart-skeleton-")
        root = cls.tmp.name
        fake.build(os.path.join(root, "fake"), seed=3)
        cls.hart, cls.qwen = os.path.join(root, "fake", "hart"), os.path.join(root, "fake", "qwen")
        cls.skeleton = os.path.join(root, "skeleton")
        cls.weights = quiet(sk.write_skeleton, cls.hart, cls.qwen, cls.skeleton, fp16=True, bits=(4, 8, 32),
                            shard_mb=SHARD_MB)
        cls.root = root

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def assert_same_package(self, converted, filled):
        self.assertEqual(differing_files(converted, filled), [])
        self.assertGreater(len(os.listdir(converted)), 20)

    def test_fill_equals_convert_for_each_text_encoder_variant(self):
        for bits in (4, 8, 32):
            with self.subTest(bits=bits):
                converted = os.path.join(self.root, f"convert{bits}")
                filled = os.path.join(self.root, f"fill{bits}")
                quiet(conv.convert, self.hart, self.qwen, converted, fp16=True, text_bits=bits, shard_mb=SHARD_MB)
                quiet(fill_mod.fill, self.skeleton, self.hart, self.qwen, filled, bits)
                self.assert_same_package(converted, filled)

    def test_fill_equals_convert_without_fp16(self):
        skeleton = os.path.join(self.root, "skeleton-fp32")
        quiet(sk.write_skeleton, self.hart, self.qwen, skeleton, fp16=False, bits=(4,), shard_mb=SHARD_MB)
        converted, filled = os.path.join(self.root, "convert-fp32"), os.path.join(self.root, "fill-fp32")
        quiet(conv.convert, self.hart, self.qwen, converted, fp16=False, text_bits=4, shard_mb=SHARD_MB)
        quiet(fill_mod.fill, skeleton, self.hart, self.qwen, filled)
        self.assert_same_package(converted, filled)
        self.assertFalse(any(".fp16." in n for n in os.listdir(filled)))

    def test_graph_files_hold_no_weights_and_every_small_weight_is_external(self):
        # The skeleton's graphs come from distinct-valued weights, so a graph file that held a
        # weight byte could not equal the converter's; here: the small biases are external too.
        names = [s["name"] for f in self.weights["files"].values() for s in f["segments"]]
        self.assertIn("tokenizer.post_quant_conv.bias", names)          # 8 floats, 32 bytes
        preview = self.weights["files"]["preview.onnx.data"]["segments"]
        self.assertEqual([s["expr"] for s in preview],
                         [{"op": "reshape", "shape": [3, 8, 1, 1], "x": {"op": "preview", "part": "weight"}},
                          {"op": "preview", "part": "bias"}])

    def test_manifest_template_marks_data_dependent_fields(self):
        with open(os.path.join(self.skeleton, "int4", "manifest.json")) as f:
            template = json.load(f)
        self.assertIsNone(template["textEncoder"]["prefixIds"])
        self.assertIsNone(template["textEncoder"]["padId"])
        by_path = {e["path"]: e for e in template["files"]}
        self.assertIsNone(by_path["tables.bin"]["sha256"])
        self.assertIsNone(by_path["tokenizer.json"]["bytes"])
        self.assertIsNotNone(by_path["transformer.onnx"]["sha256"])
        self.assertIsNone(by_path["transformer.onnx.data"]["sha256"])
        self.assertEqual(len(self.weights["text"]["prefixIds"]), 24)
        self.assertEqual(set(self.weights["variants"]), {"int4", "int8", "fp32"})

    def test_missing_key_is_reported_like_the_converter(self):
        hart = os.path.join(self.root, "hart-missing")
        shutil.copytree(self.hart, hart)
        path = os.path.join(hart, "llm", "ema_model.bin")
        state = torch.load(path)
        del state["decoder_norm.weight"]
        torch.save(state, path)
        with self.assertRaises(ckpt.CheckpointError) as by_convert:
            quiet(conv.convert, hart, self.qwen, os.path.join(self.root, "x1"), shard_mb=SHARD_MB)
        with self.assertRaises(ckpt.CheckpointError) as by_fill:
            quiet(fill_mod.fill, self.skeleton, hart, self.qwen, os.path.join(self.root, "x2"), 4)
        self.assertEqual(str(by_fill.exception), str(by_convert.exception))
        self.assertIn("missing keys: decoder_norm.weight", str(by_fill.exception))

    def test_unprefixed_tokenizer_and_bare_qwen_keys_are_accepted(self):
        rules = self.weights["sources"]
        hart, qwen = os.path.join(self.root, "hart-bare"), os.path.join(self.root, "qwen-bare")
        shutil.copytree(self.hart, hart)
        shutil.copytree(self.qwen, qwen)
        tok_path = os.path.join(hart, "tokenizer", "model.safetensors")
        raw = ckpt.read_state_dict(tok_path)
        save_file(OrderedDict((k[len("vae."):], v) for k, v in raw.items() if k.startswith("vae.")), tok_path)
        q_path = os.path.join(qwen, "model.safetensors")
        raw = ckpt.read_state_dict(q_path)
        save_file(OrderedDict((k[len("model."):], v) for k, v in raw.items()), q_path)
        got = fill_mod.read_source("tokenizer", rules["tokenizer"], hart, qwen, log=lambda m: None)
        self.assertEqual(set(got), set(rules["tokenizer"]["keys"]))
        got = fill_mod.read_source("qwen", rules["qwen"], hart, qwen, log=lambda m: None)
        self.assertEqual(set(got), set(rules["qwen"]["keys"]))

    def test_config_mismatch_names_file_field_and_values(self):
        hart = os.path.join(self.root, "hart-deeper")
        shutil.copytree(self.hart, hart)
        cfg_path = os.path.join(hart, "llm", "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["depth"] = 3
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        with self.assertRaises(fill_mod.FillError) as err:
            quiet(fill_mod.fill, self.skeleton, hart, self.qwen, os.path.join(self.root, "x3"), 4)
        self.assertEqual(str(err.exception), "llm/config.json: depth is 3, this model expects 2")


class WeightMapTest(unittest.TestCase):
    def setUp(self):
        self.pool = Pool([("llm", "a", (4, 6)), ("llm", "b", (6,)), ("qwen", "c", (2, 3, 5))])
        self.values = {(s, k): self.pool.value(i) for i, (s, k, _) in enumerate(self.pool.entries)}
        self.ctx = Context(lambda s, k: self.values[(s, k)])

    def roundtrip(self, array):
        expr = self.pool.explain(array)
        self.assertIsNotNone(expr)
        np.testing.assert_array_equal(evaluate(expr, self.ctx), array)
        return expr

    def test_copies_are_explained(self):
        a, b, c = self.values[("llm", "a")], self.values[("llm", "b")], self.values[("qwen", "c")]
        self.assertEqual(self.roundtrip(a.T)["op"], "transpose")
        self.roundtrip(a[1:3])
        self.roundtrip(np.ascontiguousarray(c.transpose(2, 0, 1)).reshape(5, 6))
        expr = self.roundtrip(np.concatenate([b, np.zeros(6, np.float32), a[0]]))
        self.assertEqual([x.get("op", "source") for x in expr["xs"]], ["source", "zeros", "reshape"])

    def test_computed_values_are_not_explained(self):
        a = self.values[("llm", "a")]
        self.assertIsNone(self.pool.explain(a * 2))
        self.assertIsNone(self.pool.explain(a[:, ::2]))          # strided: no slice/transpose/reshape gives it
        self.assertIsNone(self.pool.explain(np.full(3, 0.5, np.float32)))

    def test_skeleton_stops_on_an_unexplained_tensor(self):
        collector = sk.Collector.__new__(sk.Collector)
        collector.pools = {"hart": self.pool}
        collector.levels = np.zeros((2, 3), np.float32)
        with self.assertRaisesRegex(WeightMapError, "g.onnx: w: no expression"):
            collector.explain("g.onnx: w", self.values[("llm", "a")] + 1)

    def test_level_embedding_sums_in_index_order(self):
        rng = np.random.default_rng(0)
        s = rng.standard_normal((3, 256)).astype(np.float32)
        w1, b1 = rng.standard_normal((8, 256)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
        w2, b2 = rng.standard_normal((8, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
        got = level_embedding(s, w1, b1, w2, b2)
        h = [[sum_sequential(float(s[r, i]) * float(w1[j, i]) for i in range(256)) + float(b1[j])
              for j in range(8)] for r in range(3)]
        a = [[x / (1.0 + np.exp(-x)) for x in row] for row in h]
        want = np.array([[sum_sequential(a[r][i] * float(w2[j, i]) for i in range(8)) + float(b2[j])
                          for j in range(8)] for r in range(3)], dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(got, want)


def sum_sequential(values):
    total = 0.0
    for v in values:
        total += v
    return total


if __name__ == "__main__":
    unittest.main()
