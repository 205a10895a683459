"""The converter of the published HART + Qwen2 files (tools/convert).

A reduced-depth stand-in of the published folders (tools/convert/fake_published.py: published
key names, layouts and formats) is converted once; every graph of the package is then run
through onnxruntime-node and compared with our PyTorch modules loaded *directly* from the
tensors the stand-in wrote, on fresh inputs. Failure cases check that a missing key, an
unexpected key, a shape mismatch or an unsupported config value stop the conversion with a
message naming it.
"""

import contextlib
import copy
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from collections import OrderedDict

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(os.path.dirname(HERE))

from hart.model import HartModel
from hart.qwen2 import Qwen2Config, Qwen2Model, Qwen2TextEncoder
from export import model_budget as mb
from export.graphs import build_graphs, sample_inputs
from export.package import validate_package
from export.shards import save_sharded
from convert import checkpoint as ckpt
from convert import converter as convert_hart
from convert import fake_published as fake
from convert import quantize_weights as qw
from convert.safetensors import save_file

ORT_RUN = os.path.join(HERE, "ort_run.mjs")
SHARD_MB = 0.25


def run_onnx(runs, folder):
    """Run [(model path, {name: array}, optimization)] in one node process; return outputs per run."""
    spec = []
    for i, (model, inputs, optimization) in enumerate(runs):
        feeds = {}
        for name, array in inputs.items():
            array = np.ascontiguousarray(array)
            path = os.path.join(folder, f"in{i}_{name}.bin")
            array.tofile(path)
            feeds[name] = {"file": path, "dtype": str(array.dtype), "shape": list(array.shape)}
        spec.append({"model": model, "inputs": feeds, "out": os.path.join(folder, f"out{i}"),
                     "optimization": optimization})
    write_json(os.path.join(folder, "runs.json"), spec)
    result = subprocess.run(["node", ORT_RUN, os.path.join(folder, "runs.json")], capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"onnxruntime-node failed: {result.stderr[-3000:]}")
    outputs = []
    for run in spec:
        listing = read_json(os.path.join(run["out"], "outputs.json"))
        outputs.append({name: np.fromfile(os.path.join(run["out"], name + ".bin"), dtype=info["dtype"])
                        .reshape(info["shape"]) for name, info in listing.items()})
    return outputs


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def rel_error(got, want):
    want = np.asarray(want, dtype=np.float64)
    return float(np.abs(np.asarray(got, dtype=np.float64) - want).max() / max(np.abs(want).max(), 1e-12))


def bpe_reference(text, tokenizer):
    """Byte-level BPE as tokenizer.json describes it (split regex, byte map, merges by rank)."""
    keep = set(range(33, 127)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    extra = iter(range(256, 512))
    byte_char = {b: chr(b) if b in keep else chr(next(extra)) for b in range(256)}
    pattern = tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    vocab = tokenizer["model"]["vocab"]
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(tokenizer["model"]["merges"])}
    ids = []
    for piece in re.findall(pattern, text):
        word = [byte_char[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            word[i:i + 2] = [word[i] + word[i + 1]]
        ids += [vocab[w] for w in word]
    return ids


def reference_models(truth, hart_dir, qwen_dir, prefix):
    """Our modules loaded straight from the stand-in's tensors (no converter code involved)."""
    llm = read_json(os.path.join(hart_dir, "llm", "config.json"))
    tok = read_json(os.path.join(hart_dir, "tokenizer", "config.json"))
    qcfg = Qwen2Config.from_hf(read_json(os.path.join(qwen_dir, "config.json")))
    config = ckpt.hart_config(llm, tok, ckpt.text_encoder_config(qcfg, prefix))
    model = HartModel(config, convert_hart._transformer(config), convert_hart._tokenizer(config), None)
    model.transformer.load_state_dict(truth["ema"], strict=True)
    model.tokenizer.load_state_dict(truth["vae"], strict=True)
    qwen = Qwen2Model(qcfg)
    qwen.load_state_dict({k[len("model."):]: v.float() for k, v in truth["qwen"].items()}, strict=True)
    return model.eval(), qwen.eval()


def fake_quantized(qwen, bits, block_size=32):
    out = Qwen2Model(qwen.config)
    out.load_state_dict(qwen.state_dict())
    with torch.no_grad():
        for module in out.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.from_numpy(qw.fake_quantized_linear(module.weight, bits, block_size)))
        out.embed_tokens.weight.copy_(torch.from_numpy(qw.fake_quantized_embedding(out.embed_tokens.weight)))
    return out.eval()


class ConvertedPackageTest(unittest.TestCase):
    """One conversion (fp16 on, int4 text encoder, small shards), many checks."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="hart-convert-")
        root = cls.tmp.name
        cls.truth = fake.build(os.path.join(root, "fake"), seed=3)
        cls.hart_dir, cls.qwen_dir = os.path.join(root, "fake", "hart"), os.path.join(root, "fake", "qwen")
        cls.out = os.path.join(root, "package")
        with contextlib.redirect_stdout(io.StringIO()):
            cls.manifest = convert_hart.convert(cls.hart_dir, cls.qwen_dir, cls.out, fp16=True, text_bits=4,
                                                shard_mb=SHARD_MB)
        cls.tokenizer = read_json(os.path.join(cls.qwen_dir, "tokenizer.json"))
        cls.prefix = cls.manifest["textEncoder"]["prefixIds"]
        cls.model, cls.qwen = reference_models(cls.truth, cls.hart_dir, cls.qwen_dir, cls.prefix)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def graph_path(self, key, variant="fp32"):
        return os.path.join(self.out, self.manifest["graphs"][key][variant]["path"])

    def test_text_prefix_is_hart_system_prompt(self):
        with open(convert_hart.SYSTEM_PROMPT, encoding="utf-8") as f:
            text = f.read()
        self.assertTrue(text.startswith('Given a user prompt, generate an "Enhanced prompt"'))
        self.assertTrue(text.endswith("User Prompt:\n"))
        expected = bpe_reference(text, self.tokenizer)
        self.assertGreater(len(expected), 24)              # so the window truncates it, as HART does
        te = self.manifest["textEncoder"]
        self.assertEqual(self.prefix, expected[:24])
        self.assertEqual(te["contextTokens"], 24)
        self.assertEqual(te["contextDim"], 64)
        pad = next(t["id"] for t in self.tokenizer["added_tokens"] if t["content"] == "<|endoftext|>")
        self.assertEqual(te["padId"], pad)
        self.assertIsNone(te["unkId"])
        self.assertFalse(te["lowercase"])

    def test_manifest_reads_config_values(self):
        m = self.manifest["model"]
        self.assertEqual((m["width"], m["depth"], m["heads"]), (128, 2, 2))
        self.assertEqual(m["patchNums"], [1, 2, 3, 4])
        self.assertEqual((m["latentChannels"], m["vocabSize"], m["imageSize"]), (8, 64, 64))
        self.assertEqual(set(self.manifest["graphs"]),
                         {"textEncoder", "condition", "transformer", "head", "scaleUpdate", "diffusionHead",
                          "decoder", "preview"})
        self.assertNotIn("fp16", self.manifest["graphs"]["textEncoder"])
        self.assertIn("fp16", self.manifest["graphs"]["transformer"])

    def test_sampling_defaults_are_hart_official(self):
        """cfg 4.5 and more_smooth on (sample.py), top-p off and top-k 600 before scale 7, 300 from it
        (autoregressive_infer_cfg), temperature 1 (no logit temperature in HART)."""
        self.assertEqual(self.manifest["sampling"], {
            "cfg": 4.5, "topK": {"values": [600, 300], "from": [0, 7]}, "topP": 0.0, "temperature": 1.0,
            "smooth": True, "residual": True, "guidedScales": 0})

    def test_decoder_normalises_in_32_groups_at_every_width(self):
        """HART's `Normalize` is GroupNorm(32, eps 1e-6) whatever the width: the converted decoder of
        the stand-in's narrow tokenizer (32- and 64-channel layers) equals a decoder built with it."""
        from hart.vae import GroupNorm as OurGroupNorm, legacy_num_groups

        def reference(groups_of):
            tokenizer = copy.deepcopy(self.model.tokenizer)
            for module in list(tokenizer.modules()):
                for name, child in list(module.named_children()):
                    if isinstance(child, OurGroupNorm):
                        norm = torch.nn.GroupNorm(groups_of(child.num_channels), child.num_channels, eps=1e-6)
                        norm.load_state_dict(child.state_dict())
                        setattr(module, name, norm)
            return tokenizer.eval()

        widths = {m.num_channels for m in self.model.tokenizer.decoder.modules() if isinstance(m, OurGroupNorm)}
        self.assertEqual(widths, {32, 64})
        f_hat = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(5)) * 2
        with torch.no_grad():
            want = reference(lambda c: 32).decode_unit(f_hat).numpy()
            old = reference(legacy_num_groups).decode_unit(f_hat).numpy()
        self.assertGreater(rel_error(old, want), 1e-2)   # the two groupings are told apart
        (got,) = run_onnx([(self.graph_path("decoder"), {"f_hat": f_hat.numpy()}, "all")], self.tmp.name)
        self.assertLess(rel_error(got["image"], want), 1e-4)

    def test_package_validates(self):
        self.assertEqual(validate_package(self.out)["name"], "hart-0.7b-1024px")

    def test_files_are_listed_hashed_and_sharded(self):
        listed = {f["path"]: f for f in self.manifest["files"]}
        self.assertEqual(set(listed), set(os.listdir(self.out)) - {"manifest.json"})
        for path, entry in listed.items():
            data = read_bytes(os.path.join(self.out, path))
            self.assertEqual(entry["bytes"], len(data), path)
            self.assertEqual(entry["sha256"], hashlib.sha256(data).hexdigest(), path)
        self.assertTrue(all(listed[p]["dtype"] == "int4" for p in listed if p.startswith("text_encoder")))
        self.assertEqual(read_bytes(os.path.join(self.qwen_dir, "tokenizer.json")),
                         read_bytes(os.path.join(self.out, "tokenizer.json")))
        # Shards stay near the requested size; only a single tensor may overflow one.
        shard_bytes = int(SHARD_MB * 2**20)
        for key, entry in self.manifest["graphs"].items():
            for variant in entry.values():
                model = onnx.load(os.path.join(self.out, variant["path"]), load_external_data=False)
                biggest = {}
                for t in model.graph.initializer:
                    if t.data_location == TensorProto.EXTERNAL:
                        info = {e.key: e.value for e in t.external_data}
                        self.assertEqual(int(info["offset"]) % 4096, 0)
                        biggest[info["location"]] = max(biggest.get(info["location"], 0), int(info["length"]))
                self.assertEqual(sorted(biggest), sorted(variant.get("externalData", [])), key)
                for shard, big in biggest.items():
                    self.assertLessEqual(listed[shard]["bytes"], max(shard_bytes, big), shard)
        self.assertGreater(len(self.manifest["graphs"]["transformer"]["fp32"]["externalData"]), 3)

    def test_tables_hold_the_ema_weights(self):
        t = self.manifest["tables"]
        raw = read_bytes(os.path.join(self.out, "tables.bin"))

        def table(name):
            e = t[name]
            count = int(np.prod(e["shape"]))
            return np.frombuffer(raw, dtype="<f4", count=count, offset=e["offset"]).reshape(e["shape"])

        np.testing.assert_array_equal(table("codebook"), self.truth["vae"]["quantize.embedding.weight"].numpy())
        phi = torch.stack([self.truth["vae"][f"quantize.quant_resi.qresi_ls.{j}.weight"] for j in range(4)])
        np.testing.assert_array_equal(table("phiWeight"), phi.numpy())
        with torch.no_grad():
            levels = self.model.transformer.level_table().numpy()
            main = HartModel(self.model.config, convert_hart._transformer(self.model.config),
                             convert_hart._tokenizer(self.model.config), None)
            main.transformer.load_state_dict(self.truth["main"])
            main_levels = main.transformer.level_table().numpy()
        self.assertLess(rel_error(table("levels"), levels), 1e-6)
        self.assertGreater(rel_error(table("levels"), main_levels), 0.1)   # EMA, not the training weights

    def test_text_encoder_graph_equals_pytorch(self):
        g = torch.Generator().manual_seed(5)
        t, prefix = 24, list(self.prefix)
        ids, mask = [], []
        for n in (5, 24):   # a short prompt (padded with <|endoftext|>) and a full window
            prompt = torch.randint(0, 456, (n,), generator=g).tolist()
            pad = self.manifest["textEncoder"]["padId"]
            ids.append(prefix + prompt + [pad] * (t - n))
            mask.append([1] * (len(prefix) + n) + [0] * (t - n))
        ids, mask = np.array(ids, dtype=np.int32), np.array(mask, dtype=np.int32)
        (out,) = run_onnx([(self.graph_path("textEncoder"), {"input_ids": ids, "attention_mask": mask}, "all")],
                          self.tmp.name)
        with torch.no_grad():
            want = fake_quantized(self.qwen, 4)(torch.from_numpy(ids).long(), torch.from_numpy(mask)).numpy()
            unquantized = self.qwen(torch.from_numpy(ids).long(), torch.from_numpy(mask)).numpy()
        self.assertEqual(out["hidden"].shape, (2, len(prefix) + t, 64))
        self.assertLess(rel_error(out["hidden"], want), 1e-4)
        # A random 64-wide network amplifies rounding, so only ask int4 to keep the float model's direction.
        self.assertGreater(cosine(out["hidden"], unquantized), 0.8)

    def test_engine_cli_generates_from_the_package(self):
        """The app's engine (Node CLI, onnxruntime-node) loads the converted package and makes an image:
        Qwen2's byte-level BPE tokenizer.json, the prefix ids and the int4 text encoder included."""
        root = os.path.dirname(TOOLS)
        png = os.path.join(self.tmp.name, "cli.png")
        result = subprocess.run(["node", "--import", "tsx", "src/cli/generate.ts", "--model", self.out,
                                 "--prompt", "A cat sleeping on a warm windowsill", "--seed", "3", "--out", png,
                                 "--json"], cwd=root, capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        info = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertEqual((info["width"], info["height"]), (64, 64))
        self.assertEqual(info["model"], "hart-0.7b-1024px")
        self.assertEqual(read_bytes(png)[:8], b"\x89PNG\r\n\x1a\n")

    def test_budget_predicts_the_weight_bytes(self):
        predicted = mb.package_bytes(self.model.config, self.qwen.config, text_bits=4)
        for key, entry in self.manifest["graphs"].items():
            for variant, files in entry.items():
                model = onnx.load(os.path.join(self.out, files["path"]), load_external_data=False)
                actual = 0
                for t in model.graph.initializer:
                    if t.data_location == TensorProto.EXTERNAL:
                        actual += int({e.key: e.value for e in t.external_data}["length"])
                    else:
                        actual += len(t.raw_data) or numpy_helper.to_array(t).nbytes
                want = predicted[key][variant]
                # constant folding adds a few small tensors (e.g. the [q, 0, v] bias): within 3% + 4 KiB
                self.assertLess(abs(actual - want), 0.03 * want + 4096, f"{key} {variant}: {actual} vs {want}")

    def test_every_hart_graph_equals_pytorch(self):
        model = self.model
        preview = (torch.zeros(3, 8), torch.zeros(3))   # the preview is a fitted map, not a weight: not compared
        graphs = [g for g in build_graphs(model, preview) if g.key not in ("preview", "encoder")]   # no encoder in converted packages
        # Sizes unlike the trace's, and a non-empty KV cache.
        dims = {"condition": {"N": 2, "T": 24}, "transformer": {"N": 2, "L": 9, "P": 7},
                "head": {"N": 2, "L": 4}, "scaleUpdate": {"B": 1, "pn": 3, "pn_next": 4},
                "diffusionHead": {"B": 1, "L": 16}, "decoder": {"B": 1}}
        g = torch.Generator().manual_seed(11)
        runs, expected = [], []
        for graph in graphs:
            inputs = sample_inputs(graph, model, dims[graph.key], g)
            with torch.no_grad():
                outs = graph.module(*inputs)
            outs = outs if isinstance(outs, tuple) else (outs,)
            feeds = {name: x.numpy() for name, x in zip(graph.input_names, inputs)}
            # The fp16 step graph takes and returns its KV cache in float16.
            half = {name: x.astype(np.float16) if name in graph.fp16_io else x for name, x in feeds.items()}
            for variant in ("fp32", "fp16"):
                runs.append((self.graph_path(graph.key, variant), half if variant == "fp16" else feeds, "all"))
                expected.append((graph.key, variant, dict(zip(graph.output_names, [o.numpy() for o in outs]))))
        results = run_onnx(runs, self.tmp.name)
        for (key, variant, want), got in zip(expected, results):
            for name, value in want.items():
                err = rel_error(got[name], value)
                limit = 1e-4 if variant == "fp32" else 2e-2
                self.assertLess(err, limit, f"{key} ({variant}) output {name}: relative error {err:.2e}")


class BudgetTest(unittest.TestCase):
    """tools/export/model_budget.py: the numbers behind docs/full-model.md."""

    def test_published_parameter_count(self):
        from hart.config import CONFIGS
        counts = mb.transformer_graph_parameters(CONFIGS["hart-0.7b-1024px"])
        # word_embed is counted in both graphs that read it; HART's total (docs/hart.md §12.1) counts it once
        self.assertEqual(sum(counts.values()) - counts["scaleUpdate"], 732_399_168)
        self.assertEqual(counts["transformer"], 24 * 28_317_696)

    def test_qwen2_counts_match_the_module(self):
        cfg = Qwen2Config.from_hf(fake.QWEN_CONFIG)
        self.assertEqual(sum(mb.qwen2_parameters(cfg).values()), sum(p.numel() for p in Qwen2Model(cfg).parameters()))

    def test_macs_match_counted_operations(self):
        with tempfile.TemporaryDirectory() as tmp:
            fake.build(os.path.join(tmp, "fake"), seed=9)
            published = convert_hart.load_published(os.path.join(tmp, "fake", "hart"),
                                                    os.path.join(tmp, "fake", "qwen"), log=lambda _: None)
        model, config = published.model, published.model.config
        counted = {"macs": 0}

        def linear_hook(module, inputs, output):
            counted["macs"] += output.numel() * module.in_features

        def conv_hook(module, inputs, output):
            counted["macs"] += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]

        def attn_hook(module, inputs, output):
            b, c, h, w = inputs[0].shape
            counted["macs"] += 2 * b * (h * w) ** 2 * c

        from hart.transformer import Attention
        from hart.vae import AttnBlock

        def qkv_hook(module, inputs, output):   # qkv_proj is applied with F.linear (bias [q, 0, v])
            counted["macs"] += inputs[0].numel() * module.qkv_proj.out_features

        hooks = []
        for module in list(model.transformer.modules()) + list(model.tokenizer.modules()):
            if isinstance(module, torch.nn.Linear):
                hooks.append(module.register_forward_hook(linear_hook))
            elif isinstance(module, torch.nn.Conv2d):
                hooks.append(module.register_forward_hook(conv_hook))
            elif isinstance(module, AttnBlock):
                hooks.append(module.register_forward_hook(attn_hook))
            elif isinstance(module, Attention):
                hooks.append(module.register_forward_hook(qkv_hook))
        g = torch.Generator().manual_seed(0)
        rows, hd = 2, config.head_dim
        with torch.no_grad():
            past = None
            for length, cached in mb.scale_steps(config):
                x = torch.randn(rows, length, config.width, generator=g)
                cos, sin = torch.ones(rows, length, hd), torch.zeros(rows, length, hd)
                _, past = model.transformer.step(x, cos, sin, past)
            self.assertEqual(counted["macs"], mb.transformer_macs(config, rows)["linear"])
            counted["macs"] = 0
            m = rows * config.latent_side ** 2
            model.transformer.diffloss.net(torch.randn(m, config.latent_channels), torch.full((m,), 999.0),
                                           torch.randn(m, config.width))
            self.assertEqual(counted["macs"] * config.diffusion.steps, mb.diffusion_macs(config, rows))
            counted["macs"] = 0
            model.tokenizer.decode(torch.randn(1, config.latent_channels, config.latent_side, config.latent_side))
            self.assertEqual(counted["macs"], mb.decoder_macs(config))
        for hook in hooks:
            hook.remove()


class ExternalWeightsTest(unittest.TestCase):
    """The path of graphs over 2 GB: torch.onnx.export then writes one external file per tensor,
    and the converter must quantize, convert to fp16 and re-shard them without loading the
    whole graph into one protobuf. Simulated here by saving a small graph that way."""

    def test_fp16_quantize_and_shards_from_per_tensor_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            fake.build(os.path.join(tmp, "fake"), seed=6)
            hart, qwen = os.path.join(tmp, "fake", "hart"), os.path.join(tmp, "fake", "qwen")
            published = convert_hart.load_published(hart, qwen, log=lambda _: None)
            graphs = {g.key: g for g in build_graphs(published.model, (torch.zeros(3, 8), torch.zeros(3)))}
            graphs["textEncoder"] = convert_hart.text_encoder_graph(published)
            runs, names = [], []
            g = torch.Generator().manual_seed(2)
            for key, dims in (("transformer", {"N": 2, "L": 5, "P": 3}), ("textEncoder", {"B": 2, "S": 9})):
                graph = graphs[key]
                inline_dir, external_dir = os.path.join(tmp, key + "_in"), os.path.join(tmp, key + "_ext")
                os.makedirs(inline_dir)
                os.makedirs(external_dir)
                inline = convert_hart.trace_to_folder(graph, published.model, inline_dir)
                copy = onnx.ModelProto()
                copy.CopyFrom(inline)   # onnx.save moves the weights of the proto it is given
                onnx.save(copy, os.path.join(external_dir, "g.onnx"), save_as_external_data=True,
                          all_tensors_to_one_file=False, size_threshold=0)
                external = onnx.load(os.path.join(external_dir, "g.onnx"), load_external_data=False)
                self.assertTrue(all(t.data_location == TensorProto.EXTERNAL for t in external.graph.initializer))
                if key == "transformer":
                    pairs = [(convert_hart._fp16_from_folder(inline, inline_dir),
                              convert_hart._fp16_from_folder(external, external_dir))]
                else:
                    qw.quantize_model(inline, 4)
                    qw.quantize_model(external, 4, base_dir=external_dir)
                    pairs = [(inline, external)]
                feeds = {n: x.numpy() for n, x in zip(graph.input_names, sample_inputs(graph, published.model, dims, g))}
                for a, b in pairs:
                    out_a, out_b = os.path.join(tmp, key + "_a"), os.path.join(tmp, key + "_b")
                    os.makedirs(out_a)
                    os.makedirs(out_b)
                    convert_hart.write_graph(a, out_a, "g.onnx", inline_dir, shard_bytes=64 * 1024)
                    shards = convert_hart.write_graph(b, out_b, "g.onnx", external_dir, shard_bytes=64 * 1024)
                    self.assertGreater(len(shards), 1)
                    runs += [(os.path.join(out_a, "g.onnx"), feeds, "all"), (os.path.join(out_b, "g.onnx"), feeds, "all")]
                    names.append(key)
            results = run_onnx(runs, tmp)
        for i, key in enumerate(names):
            a, b = results[2 * i], results[2 * i + 1]
            for name in a:
                np.testing.assert_array_equal(a[name], b[name], f"{key} {name}")


class QuantizedTextEncoderTest(unittest.TestCase):
    """int8 and int4 rewrites of a small Qwen2 graph against PyTorch with the same rounded weights."""

    def test_int8_and_int4_graphs(self):
        cfg = Qwen2Config.from_hf(fake.QWEN_CONFIG)
        torch.manual_seed(0)
        qwen = Qwen2Model(cfg).eval()
        with torch.no_grad():
            for p in qwen.parameters():
                p.normal_(0.0, 0.05)
        ids = torch.randint(0, cfg.vocab_size, (2, 11), dtype=torch.int32)
        mask = torch.ones(2, 11, dtype=torch.int32)
        mask[1, 7:] = 0
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "te.onnx")
            torch.onnx.export(Qwen2TextEncoder(qwen), (ids, mask), path, opset_version=17,
                              input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                              dynamic_axes={"input_ids": {0: "B", 1: "S"}, "attention_mask": {0: "B", 1: "S"}})
            runs = []
            for bits in (8, 4):
                model = onnx.load(path)
                report = qw.quantize_model(model, bits, block_size=32)
                # 7 linear weights per layer and the embedding table
                self.assertEqual(len(report.quantized), 7 * cfg.num_hidden_layers + 1)
                self.assertLess(report.bytes_after, report.bytes_before / (3 if bits == 8 else 5))
                ops = {n.op_type for n in model.graph.node}
                self.assertIn("MatMulNBits" if bits == 4 else "DequantizeLinear", ops)
                onnx.checker.check_model(model)
                onnx.save(model, os.path.join(tmp, f"q{bits}.onnx"))
                # onnxruntime's CPU "extended" level fuses DequantizeLinear+MatMul into a matmul
                # that also quantizes the activations; "basic" keeps the graph's own arithmetic.
                runs.append((os.path.join(tmp, f"q{bits}.onnx"), {"input_ids": ids.numpy(), "attention_mask": mask.numpy()},
                             "basic"))
            results = run_onnx(runs, tmp)
        for bits, out in zip((8, 4), results):
            with torch.no_grad():
                want = fake_quantized(qwen, bits)(ids, mask).numpy()
                exact = qwen(ids, mask).numpy()
            self.assertLess(rel_error(out["hidden"], want), 1e-4, f"int{bits}")
            self.assertLess(rel_error(out["hidden"], exact), 0.05 if bits == 8 else 0.3, f"int{bits}")

    def test_int4_packing_round_trip(self):
        rng = np.random.default_rng(1)
        w = rng.standard_normal((70, 5)).astype(np.float32)   # K not a multiple of the block
        w[:, 2] = 0.0
        packed, scales, zeros = qw.quantize_int4_blocks(w, 32)
        self.assertEqual(packed.shape, (5, 3, 16))
        self.assertEqual(zeros.shape, (5 * 2,))
        back = qw.dequantize_int4_blocks(packed, scales, zeros, 70)
        np.testing.assert_array_equal(back[:, 2], 0.0)
        step = scales.reshape(5, 3)
        err = np.abs(back - w).T.reshape(5, -1)
        for n in range(5):
            for b in range(3):
                block = err[n, b * 32:(b + 1) * 32]
                self.assertLessEqual(block.max(), step[n, b] / 2 + 1e-6)


class ShardTest(unittest.TestCase):
    def test_shards_split_by_size_and_run(self):
        rng = np.random.default_rng(0)
        weights = [rng.standard_normal((64, 64)).astype(np.float32) for _ in range(5)]   # 16 KiB each
        big = rng.standard_normal((64, 256)).astype(np.float32)                          # 64 KiB
        nodes, inits, prev = [], [], "x"
        for i, w in enumerate(weights):
            nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
            inits.append(numpy_helper.from_array(w / 8, f"w{i}"))
            prev = f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, "big"], ["y"]))
        inits.append(numpy_helper.from_array(big / 8, "big"))
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 256])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        x = rng.standard_normal((2, 64)).astype(np.float32)
        want = x
        for w in weights:
            want = want @ (w / 8)
        want = want @ (big / 8)
        with tempfile.TemporaryDirectory() as tmp:
            names = save_sharded(model, os.path.join(tmp, "m.onnx"), shard_bytes=40000)
            sizes = [os.path.getsize(os.path.join(tmp, n)) for n in names]
            # two 16 KiB tensors fit in 40000 bytes with 4 KiB alignment: 2 + 2 + 1, then the big one alone
            self.assertEqual(names, ["m.onnx.data", "m.onnx.data1", "m.onnx.data2", "m.onnx.data3"])
            self.assertEqual(sizes[-1], big.nbytes)
            self.assertTrue(all(s <= 40000 for s in sizes[:-1]))
            self.assertLess(os.path.getsize(os.path.join(tmp, "m.onnx")), 4096)
            (out,) = run_onnx([(os.path.join(tmp, "m.onnx"), {"x": x}, "all")], tmp)
        self.assertLess(rel_error(out["y"], want), 1e-5)


class PublishedFilesTest(unittest.TestCase):
    """Reading the published formats, and refusing what does not fit, with the key named."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="hart-fake-")
        cls.source = os.path.join(cls.tmp.name, "source")
        cls.truth = fake.build(cls.source, seed=4)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def copy(self):
        target = tempfile.mkdtemp(dir=self.tmp.name)
        shutil.copytree(self.source, target, dirs_exist_ok=True)
        return os.path.join(target, "hart"), os.path.join(target, "qwen")

    def load(self, hart, qwen):
        return convert_hart.load_published(hart, qwen, log=lambda _: None)

    def edit_ema(self, hart, change):
        path = os.path.join(hart, "llm", "ema_model.bin")
        state = torch.load(path)
        change(state)
        torch.save(state, path)

    def edit_json(self, path, change):
        data = read_json(path)
        change(data)
        write_json(path, data)

    def test_loads_ema_weights_and_drops_buffers(self):
        published = self.load(*self.copy())
        state = published.model.transformer.state_dict()
        for key in ("blocks.1.attn.qkv_proj.weight", "head.weight", "diffloss.net.input_proj.weight"):
            self.assertTrue(torch.equal(state[key], self.truth["ema"][key]), key)
        self.assertFalse(any("zero_k_bias" in k or k in ("lvl_1L", "attn_bias_for_masking") for k in state))
        self.assertTrue(torch.equal(published.qwen.norm.weight, self.truth["qwen"]["model.norm.weight"].float()))

    def test_missing_key(self):
        hart, qwen = self.copy()
        self.edit_ema(hart, lambda s: s.pop("blocks.1.ffn.up_proj.weight"))
        with self.assertRaisesRegex(ckpt.CheckpointError, r"missing keys: blocks\.1\.ffn\.up_proj\.weight"):
            self.load(hart, qwen)

    def test_unexpected_key(self):
        hart, qwen = self.copy()
        self.edit_ema(hart, lambda s: s.__setitem__("blocks.0.attn.scale_mul_1H11", torch.zeros(1, 2, 1, 1)))
        with self.assertRaisesRegex(ckpt.CheckpointError, r"unexpected keys: blocks\.0\.attn\.scale_mul_1H11"):
            self.load(hart, qwen)

    def test_shape_mismatch(self):
        hart, qwen = self.copy()
        self.edit_ema(hart, lambda s: s.__setitem__("head.weight", torch.zeros(65, 128)))
        with self.assertRaisesRegex(ckpt.CheckpointError, r"shape mismatch: head\.weight: file \(65, 128\) vs model \(64, 128\)"):
            self.load(hart, qwen)

    def test_tokenizer_and_text_encoder_keys(self):
        hart, qwen = self.copy()
        path = os.path.join(hart, "tokenizer", "model.safetensors")
        state = ckpt.read_state_dict(path)
        state["vae.decoder.extra.weight"] = torch.zeros(1)
        save_file(state, path)
        with self.assertRaisesRegex(ckpt.CheckpointError, r"tokenizer weights.*unexpected keys: decoder\.extra\.weight"):
            self.load(hart, qwen)
        hart, qwen = self.copy()
        path = os.path.join(qwen, "model.safetensors")
        state = ckpt.read_state_dict(path)
        del state["model.layers.1.mlp.down_proj.weight"]
        save_file(state, path)
        with self.assertRaisesRegex(ckpt.CheckpointError, r"text encoder weights.*missing keys: layers\.1\.mlp\.down_proj\.weight"):
            self.load(hart, qwen)

    def test_config_values_are_required_and_checked(self):
        hart, qwen = self.copy()
        self.edit_json(os.path.join(hart, "llm", "config.json"), lambda c: c.pop("num_heads"))
        with self.assertRaisesRegex(ckpt.CheckpointError, r"llm/config\.json lacks num_heads"):
            self.load(hart, qwen)
        hart, qwen = self.copy()
        self.edit_json(os.path.join(hart, "llm", "config.json"), lambda c: c.__setitem__("attn_l2_norm", True))
        with self.assertRaisesRegex(ckpt.CheckpointError, r"attn_l2_norm = True is not supported"):
            self.load(hart, qwen)
        hart, qwen = self.copy()
        self.edit_json(os.path.join(hart, "llm", "config.json"), lambda c: c.__setitem__("context_token", 16))
        with self.assertRaisesRegex(ckpt.CheckpointError, r"lvl_1L has 53 positions but .* give 45"):
            self.load(hart, qwen)
        hart, qwen = self.copy()
        self.edit_json(os.path.join(hart, "llm", "config.json"), lambda c: c.__setitem__("num_heads", 4))
        published = self.load(hart, qwen)   # heads change no shape: the value is used as read
        self.assertEqual(published.model.config.heads, 4)
        self.assertEqual(published.model.config.head_dim, 32)

    def test_reads_sharded_and_wrapped_checkpoints(self):
        hart, qwen = self.copy()
        state = ckpt.read_state_dict(os.path.join(qwen, "model.safetensors"))
        names = list(state)
        half = len(names) // 2
        parts = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        for file, keys in parts.items():
            save_file(OrderedDict((k, state[k]) for k in keys), os.path.join(qwen, file))
        os.remove(os.path.join(qwen, "model.safetensors"))
        write_json(os.path.join(qwen, "model.safetensors.index.json"),
                   {"metadata": {}, "weight_map": {k: f for f, ks in parts.items() for k in ks}})
        self.assertEqual(ckpt.find_weights(qwen), os.path.join(qwen, "model.safetensors.index.json"))
        back = ckpt.read_state_dict(ckpt.find_weights(qwen))
        self.assertEqual(set(back), set(state))
        self.assertTrue(all(torch.equal(back[k], state[k]) for k in state))
        tok = os.path.join(hart, "tokenizer")
        os.rename(os.path.join(tok, "model.safetensors"), os.path.join(tok, "vae_weights.safetensors"))
        self.assertEqual(ckpt.find_weights(tok), os.path.join(tok, "vae_weights.safetensors"))
        wrapped = os.path.join(hart, "wrapped.bin")
        torch.save({"state_dict": {"a": torch.ones(2)}, "step": 5}, wrapped)
        self.assertEqual(list(ckpt.read_state_dict(wrapped)), ["a"])

    def test_cli_reports_errors_without_traceback(self):
        hart, qwen = self.copy()
        self.edit_ema(hart, lambda s: s.pop("decoder_norm.weight"))
        result = subprocess.run([sys.executable, "-m", "convert", "--hart", hart, "--qwen", qwen,
                                 "--out", os.path.join(self.tmp.name, "never")], capture_output=True, text=True, cwd=TOOLS)
        self.assertEqual(result.returncode, 1)
        self.assertIn("error: llm weights (ema_model.bin): missing keys: decoder_norm.weight", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "never")))


if __name__ == "__main__":
    unittest.main()
