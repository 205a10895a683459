import copy
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np
import torch

from hart.config import get_config
from hart.model import HartModel
from hart.resample import area_matrix, bicubic_matrix
from hart.text_vocab import SHAPES_WORDS, tokenize
from export.fp16 import to_fp16
from export.graphs import (DiffusionHeadGraph, ScaleUpdateGraph, build_graphs, fit_preview, sample_inputs)
from export.package import PackageError, sha256_file, validate_package
from export.writer import export_onnx, export_package, save_onnx

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(os.path.dirname(HERE))
ORT_CHECK = os.path.join(HERE, "ort_check.mjs")

# Fresh sizes, all different from the ones the graphs were traced with.
CHECK_DIMS = {
    "textEncoder": [{"B": 3, "S": 8}, {"B": 1, "S": 5}],
    "condition": [{"N": 2, "T": 8}],
    "transformer": [{"N": 2, "L": 8, "P": 0}, {"N": 6, "L": 4, "P": 9}],
    "head": [{"N": 2, "L": 1}, {"N": 4, "L": 9}],
    "scaleUpdate": [{"B": 1, "pn": 1, "pn_next": 2}, {"B": 3, "pn": 3, "pn_next": 4}],
    "diffusionHead": [{"B": 1, "L": 16}, {"B": 2, "L": 16}],
    "decoder": [{"B": 1}, {"B": 3}],
    "preview": [{"B": 3}],
}
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f)


def run_ort(cases, folder, runtime="node"):
    """Run cases through onnxruntime-node (or onnxruntime-web's WASM build: runtime="wasm");
    returns {case name: result}."""
    spec = os.path.join(folder, f"spec.{runtime}.json")
    with open(spec, "w") as f:
        json.dump({"cases": cases}, f)
    done = subprocess.run(["node", ORT_CHECK, spec, runtime], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"ort_check failed: {done.stderr[-2000:]}")
    return {c["name"]: c for c in json.loads(done.stdout)["cases"]}


def write_case(name, model_path, graph, inputs, outputs, folder, half=()):
    """A case for ort_check.mjs; inputs named in `half` are written as float16."""
    case = {"name": name, "model": model_path, "inputs": {}, "expected": {}}
    for (input_name, _, _), value in zip(graph.inputs, inputs):
        file = f"{name}.in.{input_name}.npy"
        array = value.numpy()
        np.save(os.path.join(folder, file), array.astype(np.float16) if input_name in half else array)
        case["inputs"][input_name] = file
    for (output_name, _), value in zip(graph.outputs, outputs):
        file = f"{name}.out.{output_name}.npy"
        np.save(os.path.join(folder, file), value.numpy())
        case["expected"][output_name] = file
    return case


class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hart-export-")
        cls.model = HartModel.random(get_config("tiny"), 0)
        cls.package = os.path.join(cls.tmp, "package")
        cls.manifest = export_package(cls.model, cls.package, fp16=True, seed=0, log=lambda *_: None)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # Graph parity. ----------------------------------------------------------------------

    @torch.no_grad()
    def test_graphs_equal_pytorch_in_onnxruntime(self):
        folder = os.path.join(self.tmp, "parity")
        os.makedirs(folder)
        generator = torch.Generator().manual_seed(123)
        preview = fit_preview(self.model, torch.Generator().manual_seed(0))
        cases, tolerance = [], {}
        for graph in build_graphs(self.model, preview):
            if graph.key == "encoder":
                continue   # integer tokens: its own test below compares them exactly
            for i, dims in enumerate(CHECK_DIMS[graph.key]):
                inputs = sample_inputs(graph, self.model, dims, generator)
                outputs = graph.module(*inputs)
                outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
                for variant, limit in (("fp32", FP32_TOLERANCE), ("fp16", FP16_TOLERANCE)):
                    path = os.path.join(self.package, self.manifest["graphs"][graph.key][variant]["path"])
                    name = f"{graph.key}.{i}.{variant}"
                    half = graph.fp16_io if variant == "fp16" else ()
                    cases.append(write_case(name, path, graph, inputs, outputs, folder, half))
                    tolerance[name] = limit
        results = run_ort(cases, folder)
        worst = {}
        for name, result in results.items():
            self.assertTrue(result["ok"], f"{name}: {result.get('error')}")
            for output, stats in result["outputs"].items():
                self.assertLessEqual(stats["rel"], tolerance[name], f"{name} {output}: {stats}")
                variant = name.rsplit(".", 1)[1]
                worst[variant] = max(worst.get(variant, 0.0), stats["rel"])
        print(f"\n  max relative error over all graphs: fp32 {worst['fp32']:.2e}, fp16 {worst['fp16']:.2e}")

    @torch.no_grad()
    def test_fp16_weights_only_fallback_runs(self):
        folder = os.path.join(self.tmp, "fallback")
        os.makedirs(folder)
        graph = [g for g in build_graphs(self.model, fit_preview(self.model, torch.Generator()))
                 if g.key == "head"][0]
        save_onnx(to_fp16(export_onnx(graph, self.model), weights_only=True), folder, "head.onnx", False)
        inputs = sample_inputs(graph, self.model, {"N": 2, "L": 3}, torch.Generator().manual_seed(4))
        case = write_case("head", "head.onnx", graph, inputs, (graph.module(*inputs),), folder)
        result = run_ort([case], folder)["head"]
        self.assertTrue(result["ok"], result.get("error"))
        self.assertLess(result["outputs"]["logits"]["rel"], FP16_TOLERANCE)

    @torch.no_grad()
    def test_encoder_equals_the_tokenizer(self):
        """encoder.onnx gives the tokenizer's f, its token maps exactly and the discrete f_hat."""
        folder = os.path.join(self.tmp, "encoder")
        os.makedirs(folder)
        tokenizer, c = self.model.tokenizer, self.model.config
        graph = [g for g in build_graphs(self.model, fit_preview(self.model, torch.Generator())) if g.key == "encoder"][0]
        cases = []
        for i, batch in enumerate((1, 2)):
            image = torch.rand((batch, 3, c.image_size, c.image_size), generator=torch.Generator().manual_seed(7 + i))
            f = tokenizer.encode_continuous(image * 2 - 1)
            idx_list, f_hat, _ = tokenizer.quantize.encode_indices(f)
            tokens = torch.cat([idx.flatten(1) for idx in idx_list], 1).to(torch.int32)
            for variant in ("fp32", "fp16"):
                path = os.path.join(self.package, self.manifest["graphs"]["encoder"][variant]["path"])
                cases.append(write_case(f"encoder.{i}.{variant}", path, graph, [image], (f, tokens, f_hat), folder))
        results = run_ort(cases, folder)
        for name, result in results.items():
            self.assertTrue(result["ok"], f"{name}: {result.get('error')}")
            outputs = result["outputs"]
            if name.endswith("fp32"):
                self.assertEqual(outputs["tokens"]["maxAbs"], 0, f"{name}: tokens differ")
                self.assertLessEqual(outputs["f"]["rel"], FP32_TOLERANCE, name)
                self.assertLessEqual(outputs["f_hat"]["rel"], FP32_TOLERANCE, name)
            else:
                self.assertLessEqual(outputs["f"]["rel"], FP16_TOLERANCE, name)

    def test_packages_without_an_encoder_still_validate(self):
        folder = os.path.join(self.tmp, "no-encoder")
        shutil.copytree(self.package, folder)
        manifest = read_json(os.path.join(folder, "manifest.json"))
        del manifest["graphs"]["encoder"]
        write_json(os.path.join(folder, "manifest.json"), manifest)
        validate_package(folder)
        manifest["graphs"]["encoder"] = {"fp32": {"path": "decoder.onnx"}}
        write_json(os.path.join(folder, "manifest.json"), manifest)
        with self.assertRaisesRegex(PackageError, "encoder contract"):
            validate_package(folder)

    # The graphs implement the reference modules. -----------------------------------------

    @torch.no_grad()
    def test_scale_update_equals_quantizer(self):
        graph = ScaleUpdateGraph(self.model)
        quantizer, c = self.model.tokenizer.quantize, self.model.config
        levels = self.model.transformer.level_table()
        f_hat = torch.randn(2, c.latent_channels, c.latent_side, c.latent_side)
        for k, pn in enumerate(c.patch_nums[:-1]):
            tokens = torch.randn(2, pn * pn, c.latent_channels)
            phi = quantizer.quant_resi.qresi_ls[c.phi_indices[k]]
            f_next, x_next = graph(f_hat, tokens, bicubic_matrix(c.latent_side, pn), phi.weight, phi.bias,
                                   area_matrix(c.patch_nums[k + 1], c.latent_side), levels[k + 1])
            ref = quantizer.add_scale(f_hat, tokens.transpose(1, 2).reshape(2, -1, pn, pn), k)
            ref_x = self.model.transformer.scale_input(quantizer.next_input(ref, k + 1), levels[k + 1])
            self.assertLess((f_next - ref).abs().max().item(), 1e-5)
            self.assertLess((x_next - torch.cat([ref_x, ref_x])).abs().max().item(), 1e-5)
            f_hat = f_next

    @torch.no_grad()
    def test_diffusion_head_equals_diffloss(self):
        graph = DiffusionHeadGraph(self.model)
        c = self.model.config
        hidden = torch.randn(2, 16, c.width)
        tokens = torch.randn(1, 16, c.latent_channels)
        x = torch.randn(16, c.latent_channels)
        t = torch.tensor([856.0])
        eps, v = graph(x, t, hidden, tokens, torch.tensor([1.5]))
        z = self.model.transformer.diffusion_condition(hidden, tokens)
        ref_eps, ref_v = self.model.transformer.diffloss.guided_eps(x, t.expand(16), z[:16], z[16:], 1.5)
        self.assertLess((eps - ref_eps).abs().max().item(), 1e-5)
        self.assertLess((v - ref_v).abs().max().item(), 1e-5)

    # Package contents. --------------------------------------------------------------------

    def test_manifest(self):
        m, c = self.manifest, self.model.config
        self.assertEqual((m["format"], m["formatVersion"]), ("hart-web-package", 1))
        self.assertEqual(m["model"]["patchNums"], list(c.patch_nums))
        self.assertEqual(m["model"]["phiIndex"], list(c.phi_indices))
        self.assertEqual(m["textEncoder"]["contextTokens"], c.context_tokens)
        listed = {f["path"] for f in m["files"]}
        on_disk = set(os.listdir(self.package)) - {"manifest.json"}
        self.assertEqual(listed, on_disk)
        for graph in m["graphs"].values():
            self.assertEqual(set(graph), {"fp32", "fp16"})
        self.assertEqual(m["graphs"]["transformer"]["fp32"]["externalData"], ["transformer.onnx.data"])

    def test_tables_read_back(self):
        c = self.model.config
        tables = self.manifest["tables"]
        data = read_bytes(os.path.join(self.package, "tables.bin"))

        def table(name):
            t = tables[name]
            count = int(np.prod(t["shape"]))
            return np.frombuffer(data, "<f4", count, t["offset"]).reshape(t["shape"])

        quantizer = self.model.tokenizer.quantize
        np.testing.assert_array_equal(table("codebook"), quantizer.embedding.weight.detach().numpy())
        np.testing.assert_array_equal(table("phiWeight")[2], quantizer.quant_resi.qresi_ls[2].weight.detach().numpy())
        np.testing.assert_allclose(table("levels"), self.model.transformer.level_table().detach().numpy(), atol=1e-6)
        for k, pn in enumerate(c.patch_nums):
            np.testing.assert_array_equal(table(f"upsample.{k}"), bicubic_matrix(c.latent_side, pn).numpy())
            np.testing.assert_array_equal(table(f"downsample.{k}"), area_matrix(pn, c.latent_side).numpy())

    @torch.no_grad()
    def test_preview_fit_recovers_a_linear_decoder(self):
        # With a decoder that is exactly linear per latent pixel (then upscaled), the least-squares
        # fit must find its weights and bias.
        c = self.model.config
        g = torch.Generator().manual_seed(5)
        true_w, true_b = torch.randn(3, c.latent_channels, generator=g), torch.randn(3, generator=g)
        factor = c.image_size // c.latent_side

        def linear_decoder(f_hat):
            rgb = torch.einsum("oc,bchw->bohw", true_w, f_hat) + true_b[None, :, None, None]
            return rgb.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)

        fake = HartModel(c, self.model.transformer, copy.copy(self.model.tokenizer), self.model.text_encoder)
        fake.tokenizer.decode_unit = linear_decoder
        weight, bias = fit_preview(fake, torch.Generator().manual_seed(0))
        self.assertLess((weight - true_w).abs().max().item(), 1e-4)
        self.assertLess((bias - true_b).abs().max().item(), 1e-4)

    def test_the_packages_decoder_restores_a_slim_checkpoints_tokenizer_exactly(self):
        from lab.slim_checkpoint import slim
        from lab.tokenizer_from_package import full_precision_tokenizer, graph_weights
        weights = graph_weights(os.path.join(self.package, "decoder.onnx"))
        blob = full_precision_tokenizer(slim(self.model.checkpoint()), weights)
        original = self.model.tokenizer.state_dict()
        self.assertEqual(set(blob["state_dict"]), set(original))
        for name, value in original.items():
            self.assertTrue(torch.equal(blob["state_dict"][name], value), name)
        other = HartModel.random(get_config("tiny"), 1)
        with self.assertRaisesRegex(ValueError, "different models"):
            full_precision_tokenizer(slim(other.checkpoint()), weights)

    def test_tokenizer_json_matches_python_tokenize(self):
        prompts = ["a red circle on a blue background", "Two GREEN squares, above a white background!",
                   "a  purple\ttriangle in the top-left", "an orange unicorn"]
        script = (
            "import { Tokenizer } from '@huggingface/tokenizers';"
            "import { readFileSync } from 'node:fs';"
            "const tok = new Tokenizer(JSON.parse(readFileSync(process.argv[1], 'utf8')), { unk_token: '[UNK]' });"
            "const prompts = JSON.parse(process.argv[2]);"
            "console.log(JSON.stringify(prompts.map((p) => tok.encode(p).ids)));"
        )
        done = subprocess.run(["node", "--input-type=module", "-e", script,
                               os.path.join(self.package, "tokenizer.json"), json.dumps(prompts)],
                              capture_output=True, text=True, cwd=TOOLS, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        js_ids = json.loads(done.stdout)
        self.assertEqual(js_ids, [tokenize(p, SHAPES_WORDS) for p in prompts])
        self.assertIn(1, js_ids[3])   # "unicorn" is unknown

    # Validation. --------------------------------------------------------------------------

    def corrupted_copy(self, name):
        target = os.path.join(self.tmp, name)
        shutil.copytree(self.package, target)
        return target

    def test_package_validates(self):
        manifest = validate_package(self.package)
        self.assertEqual(manifest["name"], "hart-tiny")

    def test_changed_byte_is_detected(self):
        folder = self.corrupted_copy("flipped")
        path = os.path.join(folder, "head.onnx")
        data = bytearray(read_bytes(path))
        data[len(data) // 2] ^= 0xFF
        write_bytes(path, bytes(data))
        with self.assertRaisesRegex(PackageError, r"^head\.onnx: sha256"):
            validate_package(folder)

    def test_truncated_graph_is_detected(self):
        folder = self.corrupted_copy("truncated")
        path = os.path.join(folder, "transformer.onnx.data")
        write_bytes(path, read_bytes(path)[: len(read_bytes(path)) // 2])
        with self.assertRaisesRegex(PackageError, r"^transformer\.onnx\.data: .*truncated"):
            validate_package(folder)

    def test_damaged_graph_with_matching_hash_is_detected(self):
        # Even a manifest rewritten to match garbage bytes fails: the graph must parse.
        folder = self.corrupted_copy("garbage")
        path = os.path.join(folder, "decoder.onnx")
        write_bytes(path, b"\x08\x07garbage" * 10)
        manifest = read_json(os.path.join(folder, "manifest.json"))
        for f in manifest["files"]:
            if f["path"] == "decoder.onnx":
                f["bytes"], f["sha256"] = os.path.getsize(path), sha256_file(path)
        write_json(os.path.join(folder, "manifest.json"), manifest)
        with self.assertRaisesRegex(PackageError, r"^decoder\.onnx: "):
            validate_package(folder)

    def test_unknown_version_and_unsafe_paths_are_rejected(self):
        folder = self.corrupted_copy("version")
        manifest_path = os.path.join(folder, "manifest.json")
        manifest = read_json(manifest_path)
        write_json(manifest_path, {**manifest, "formatVersion": 2})
        with self.assertRaisesRegex(PackageError, r"^manifest\.json: unsupported formatVersion 2"):
            validate_package(folder)
        manifest["files"][0]["path"] = "../etc/passwd"
        write_json(manifest_path, manifest)
        with self.assertRaisesRegex(PackageError, r"unsafe path"):
            validate_package(folder)

    def test_missing_file_is_detected(self):
        folder = self.corrupted_copy("missing")
        os.remove(os.path.join(folder, "tables.bin"))
        with self.assertRaisesRegex(PackageError, r"^tables\.bin: missing"):
            validate_package(folder)


if __name__ == "__main__":
    unittest.main()


class CheckpointExportTest(unittest.TestCase):
    def test_cli_exports_a_trained_checkpoint(self):
        from export import __main__ as export_package
        model = HartModel.random(get_config("tiny"), 3)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.pt")
            torch.save({**model.checkpoint(), "step": 10}, path)       # extra keys are allowed
            out = os.path.join(tmp, "package")
            self.assertEqual(export_package.main(["--checkpoint", path, "--out", out, "--no-fp16",
                                                  "--description", "trained", "--guided-scales", "3"]), 0)
            manifest = validate_package(out)
            self.assertEqual(manifest["description"], "trained")
            self.assertEqual(manifest["sampling"]["guidedScales"], 3)   # the rest of the model's defaults stay
            self.assertEqual(manifest["sampling"]["cfg"], model.config.sampling.cfg)
            codebook = np.fromfile(os.path.join(out, "tables.bin"), dtype="<f4",
                                   count=int(np.prod(manifest["tables"]["codebook"]["shape"])))
            np.testing.assert_array_equal(codebook.reshape(manifest["tables"]["codebook"]["shape"]),
                                          model.tokenizer.quantize.embedding.weight.detach().numpy())

    def test_checkpoint_without_text_encoder_is_rejected(self):
        model = HartModel.random(get_config("tiny"), 3)
        with self.assertRaisesRegex(ValueError, "text_encoder"):
            HartModel.from_checkpoint({**model.checkpoint(), "text_encoder": None})


class WordSkipExportTest(unittest.TestCase):
    @torch.no_grad()
    def test_text_encoder_with_word_skip_equals_pytorch_in_onnxruntime(self):
        tiny = get_config("tiny")
        config = dataclasses.replace(tiny, text_encoder=dataclasses.replace(tiny.text_encoder, word_skip=True))
        model = HartModel.random(config, 0)
        graph = next(g for g in build_graphs(model, fit_preview(model, torch.Generator().manual_seed(0)))
                     if g.key == "textEncoder")
        tmp = tempfile.mkdtemp(prefix="hart-word-skip-")
        self.addCleanup(shutil.rmtree, tmp, True)
        save_onnx(export_onnx(graph, model), tmp, "text_encoder.onnx", False)
        generator = torch.Generator().manual_seed(5)
        cases = []
        for i, dims in enumerate(CHECK_DIMS["textEncoder"]):
            inputs = sample_inputs(graph, model, dims, generator)
            cases.append(write_case(f"text.{i}", os.path.join(tmp, "text_encoder.onnx"), graph, inputs,
                                    (graph.module(*inputs),), tmp, ()))
        for name, result in run_ort(cases, tmp).items():
            self.assertTrue(result["ok"], f"{name}: {result.get('error')}")
            for output, stats in result["outputs"].items():
                self.assertLessEqual(stats["rel"], FP32_TOLERANCE, f"{name} {output}: {stats}")

