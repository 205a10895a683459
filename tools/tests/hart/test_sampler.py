import json
import os
import tempfile
import unittest

import numpy as np
import torch

from hart.config import SamplingDefaults, check_top_k, get_config, sampling_json, top_k_at
from hart.model import HartModel
from hart.sampler import (encode_prompts, filter_logits, generate, guidance_at, gumbel_tau, make_draws,
                          sample_tokens, scale_ratio, smooth_vectors, to_pixels)
from export.golden import DEFAULT_CASES, write_golden
from export.package import validate_package

PROMPT = "a red circle on a blue background"


class ScheduleTest(unittest.TestCase):
    def test_hart_1024_table(self):
        # docs/hart.md §6: CFG t = 4.5·si/13, the last scale reuses si = 12; τ from 0.27 to 0.033.
        K = 14
        self.assertEqual(guidance_at(4.5, 0, K), 0.0)
        self.assertAlmostEqual(guidance_at(4.5, 1, K), 0.346, places=3)
        self.assertAlmostEqual(guidance_at(4.5, 12, K), 4.154, places=3)
        self.assertAlmostEqual(guidance_at(4.5, 13, K), 4.154, places=3)
        taus = [0.27, 0.250, 0.231, 0.211, 0.191, 0.171, 0.152, 0.132, 0.112, 0.092, 0.073, 0.053, 0.033, 0.033]
        for k, tau in enumerate(taus):
            self.assertAlmostEqual(gumbel_tau(k, K), tau, places=3)
        self.assertEqual(scale_ratio(13, K), scale_ratio(12, K))

    def test_guided_scales_cut_the_ramp(self):
        K = 10
        self.assertEqual([guidance_at(4.0, k, K, 0) for k in range(K)], [guidance_at(4.0, k, K) for k in range(K)])
        cut = [guidance_at(4.0, k, K, 6) for k in range(K)]
        self.assertEqual(cut[:6], [guidance_at(4.0, k, K) for k in range(6)])
        self.assertEqual(cut[6:], [0.0] * 4)   # the last scale (and so the residual head) too


class TopKScheduleTest(unittest.TestCase):
    def test_official_schedule_and_checks(self):
        hart = get_config("hart-0.7b-1024px").sampling
        self.assertEqual(hart.top_k, {"values": [600, 300], "from": [0, 7]})
        self.assertEqual([top_k_at(hart.top_k, k) for k in (0, 6, 7, 13)], [600, 600, 300, 300])
        self.assertEqual(top_k_at(20, 5), 20)
        self.assertEqual(sampling_json(hart)["topK"], {"values": [600, 300], "from": [0, 7]})
        for bad in ({"values": [600, 300], "from": [1, 7]}, {"values": [600, 300], "from": [0, 0]},
                    {"values": [600], "from": [0, 7]}, {"values": [600, -1], "from": [0, 7]},
                    {"values": [600, 300]}, -1, 2.5, [600, 300]):
            with self.assertRaises(ValueError, msg=repr(bad)):
                check_top_k(bad)


class TokenSamplingTest(unittest.TestCase):
    def test_top_k_keeps_ties_at_the_kth_value(self):
        logits = np.array([[1.0, 3.0, 2.0, 2.0, 0.5]])
        kept = filter_logits(logits, 1.0, 2, 0.0)
        np.testing.assert_array_equal(np.isfinite(kept[0]), [False, True, True, True, False])
        self.assertTrue(np.isfinite(filter_logits(logits, 1.0, 0, 0.0)).all())

    def test_top_p_keeps_shortest_prefix_reaching_the_mass(self):
        p = np.array([0.1, 0.5, 0.25, 0.15])
        logits = np.log(p)[None]
        np.testing.assert_array_equal(np.isfinite(filter_logits(logits, 1.0, 0, 0.6)[0]), [False, True, True, False])
        np.testing.assert_array_equal(np.isfinite(filter_logits(logits, 1.0, 0, 0.75)[0]), [False, True, True, False])
        np.testing.assert_array_equal(np.isfinite(filter_logits(logits, 1.0, 0, 0.76)[0]), [False, True, True, True])
        np.testing.assert_array_equal(np.isfinite(filter_logits(logits, 1.0, 0, 0.01)[0]), [False, True, False, False])

    def test_temperature_scales_logits(self):
        logits = np.array([[1.0, -2.0, 0.5]])
        np.testing.assert_allclose(filter_logits(logits, 0.5, 0, 0.0), logits * 2)

    def test_inverse_cdf_in_vocabulary_order(self):
        p = np.array([0.2, 0.0, 0.3, 0.5])
        with np.errstate(divide="ignore"):
            kept = np.log(p)[None].repeat(5, 0)
        u = np.array([0.0, 0.1999, 0.2001, 0.4999, 0.9999])
        np.testing.assert_array_equal(sample_tokens(kept, u), [0, 0, 2, 2, 3])

    def test_frequencies_follow_probabilities(self):
        rng = np.random.default_rng(0)
        logits = rng.normal(size=(1, 6)) * 2
        kept = filter_logits(logits, 1.0, 4, 0.0)
        u = rng.random(20000)
        idx = sample_tokens(kept.repeat(len(u), 0), u)
        p = np.exp(kept[0] - kept[0].max())
        p /= p.sum()
        freq = np.bincount(idx, minlength=6) / len(u)
        self.assertLess(np.abs(freq - p).max(), 0.015)
        self.assertEqual(freq[~np.isfinite(kept[0])].sum(), 0)

    def test_gumbel_smoothing(self):
        rng = np.random.default_rng(1)
        kept = filter_logits(rng.normal(size=(3, 8)), 1.0, 5, 0.0)
        codebook = rng.normal(size=(8, 4)).astype(np.float32)
        u = rng.random(3 * 8)
        # A tiny τ makes the soft embedding the Gumbel-max choice among the kept logits.
        g = -np.log(-np.log(u.reshape(3, 8)))
        choice = np.argmax(kept * 1.5 + g, axis=-1)
        vectors = smooth_vectors(kept, 0.5, 1e-4, u, codebook)
        np.testing.assert_allclose(vectors, codebook[choice], atol=1e-5)
        # Removed logits never contribute, however large their noise.
        u2 = u.reshape(3, 8).copy()
        u2[~np.isfinite(kept)] = 1 - 1e-12
        soft = smooth_vectors(kept, 0.5, 10.0, u2.ravel(), np.eye(8, dtype=np.float32))
        self.assertTrue((soft[~np.isfinite(kept)] == 0).all())
        np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)


class PromptTest(unittest.TestCase):
    def test_truncate_pad_and_count(self):
        config = get_config("tiny")
        ids, mask, n = encode_prompts(config, ["A red CIRCLE", "two small green squares above a white background left"])
        self.assertEqual(ids.dtype, np.int32)
        self.assertEqual(n, [3, 8])
        np.testing.assert_array_equal(mask[0], [1, 1, 1, 0, 0, 0, 0, 0])
        self.assertTrue((ids[0, 3:] == 0).all())
        self.assertEqual(ids.shape, (2, config.context_tokens))


class GenerateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = HartModel.random(get_config("tiny"), 0)
        cls.config = cls.model.config

    def run_sampler(self, **settings):
        s = SamplingDefaults(**{"cfg": 2.5, "top_k": 20, "top_p": 0.0, **settings})
        draws = make_draws(self.config, 1, 7, smooth=s.smooth, residual=s.residual)
        return generate(self.model, [PROMPT], s, draws), draws

    def test_draw_shapes(self):
        draws = make_draws(self.config, 2, 0)
        c = self.config
        self.assertEqual([len(u) for u in draws.token_uniforms], [2 * pn * pn for pn in c.patch_nums])
        self.assertEqual(len(draws.gumbel_uniforms[1]), 2 * 4 * c.vocab_size)
        self.assertEqual(len(draws.diffusion_noise), 8)
        self.assertEqual(draws.diffusion_noise[0].shape, (2 * 16 * c.latent_channels,))

    def test_deterministic_given_draws(self):
        a, _ = self.run_sampler(smooth=True)
        b, _ = self.run_sampler(smooth=True)
        np.testing.assert_array_equal(a.pixels, b.pixels)
        self.assertEqual(a.pixels.shape, (1, 32, 32, 4))

    def test_discrete_only_image_is_the_token_pyramid(self):
        trace, _ = self.run_sampler(residual=False)
        self.assertIsNone(trace.residual)
        idx = [torch.from_numpy(s["tokens"]).long().reshape(1, pn, pn)
               for s, pn in zip(trace.scales, self.config.patch_nums)]
        f_hat = self.model.tokenizer.quantize.indices_to_fhat(idx)
        np.testing.assert_allclose(trace.scales[-1]["f_hat"], f_hat.detach().numpy(), atol=1e-5)

    def test_residual_is_added_at_the_last_scale(self):
        with_res, _ = self.run_sampler(residual=True)
        without, _ = self.run_sampler(residual=False)
        # Same draws for the tokens: identical up to the last scale's residual.
        for a, b in zip(with_res.scales, without.scales):
            np.testing.assert_array_equal(a["tokens"], b["tokens"])
        side, cv = self.config.latent_side, self.config.latent_channels
        res_map = with_res.residual.reshape(1, side * side, cv).transpose(0, 2, 1).reshape(1, cv, side, side)
        np.testing.assert_allclose(with_res.scales[-1]["f_hat"] - without.scales[-1]["f_hat"], res_map, atol=1e-5)
        self.assertLessEqual(np.abs(with_res.residual).max(), 0.6 + 1e-6)   # clip_denoised · 0.6

    def test_top_k_schedule_applies_per_scale(self):
        # Top-k off on scales 0–1, top-1 from scale 2 on: scales 2 and 3 take their argmax.
        hits = []
        for seed in (1, 2, 3):
            s = SamplingDefaults(cfg=2.5, top_k={"values": [0, 1], "from": [0, 2]}, top_p=0.0, residual=False)
            trace = generate(self.model, [PROMPT], s, make_draws(self.config, 1, seed, smooth=False, residual=False))
            for k, scale in enumerate(trace.scales):
                best = scale["logits"].reshape(-1, self.config.vocab_size).argmax(-1)
                hits.append((k, bool(np.array_equal(scale["tokens"].reshape(-1), best))))
        self.assertTrue(all(hit for k, hit in hits if k >= 2))
        self.assertFalse(all(hit for k, hit in hits if k < 2))

    def test_forced_scales_take_the_given_tokens(self):
        drawn, _ = self.run_sampler(residual=False)
        s = SamplingDefaults(cfg=2.5, top_k=20, top_p=0.0, residual=False)
        other_draws = make_draws(self.config, 1, 99, smooth=False, residual=False)
        every = [scale["tokens"] for scale in drawn.scales]
        # Every scale forced: the first run again, whatever the draws.
        again = generate(self.model, [PROMPT], s, other_draws, every)
        np.testing.assert_array_equal(again.pixels, drawn.pixels)
        # The first two forced: those match, and the rest come from the draws.
        free = generate(self.model, [PROMPT], s, other_draws)
        part = generate(self.model, [PROMPT], s, other_draws, every[:2])
        for k in range(2):
            np.testing.assert_array_equal(part.scales[k]["tokens"], every[k])
        self.assertFalse(all(np.array_equal(a["tokens"], b["tokens"])
                             for a, b in zip(part.scales[2:], drawn.scales[2:])))
        self.assertFalse(np.array_equal(free.scales[0]["tokens"], every[0])
                         and np.array_equal(free.scales[1]["tokens"], every[1]))

    @torch.no_grad()
    def test_logits_equal_teacher_forced_transformer(self):
        # Recompute every scale's guided logits with one block-causal pass fed the sampled tokens.
        trace, _ = self.run_sampler(residual=False)
        model, c = self.model.transformer, self.config
        quantizer = self.model.tokenizer.quantize
        ids, mask, n = encode_prompts(c, [PROMPT])
        text = self.model.text_encoder(torch.from_numpy(ids), torch.from_numpy(mask))
        f_hat = torch.zeros(1, c.latent_channels, c.latent_side, c.latent_side)
        inputs = []
        for k, (scale, pn) in enumerate(zip(trace.scales[:-1], c.patch_nums)):
            idx = torch.from_numpy(scale["tokens"]).long().reshape(1, pn, pn)
            f_hat = quantizer.add_scale(f_hat, quantizer.lookup(idx), k)
            inputs.append(quantizer.next_input(f_hat, k + 1))
        inputs = torch.cat(inputs, dim=1)
        cond, _ = model.forward_train(text, n, inputs)
        # Unconditional rows: zero text, positions 0 (n = 1 gives positions min(j, 0) and offset 0).
        uncond, _ = model.forward_train(torch.zeros_like(text), [1], inputs)
        start = 0
        for k, pn in enumerate(c.patch_nums):
            t = guidance_at(2.5, k, c.num_scales)
            ref = (1 + t) * cond[:, start:start + pn * pn] - t * uncond[:, start:start + pn * pn]
            got = trace.scales[k]["logits"]
            self.assertLess(np.abs(got - ref.numpy()).max() / np.abs(got).max(), 1e-5, f"scale {k}")
            start += pn * pn

    def test_pixels_truncate(self):
        image = np.array([[[[0.0, 0.999, 1.0, 0.5]]]] * 3).reshape(1, 3, 1, 4)
        px = to_pixels(image)
        np.testing.assert_array_equal(px[0, 0, :, 0], [0, 254, 255, 127])
        self.assertTrue((px[..., 3] == 255).all())


if __name__ == "__main__":
    unittest.main()


class CommittedFixtureTest(unittest.TestCase):
    """tests/fixtures/tiny must stay what the current reference produces (else re-export it)."""

    FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                           "tests", "fixtures", "tiny")

    def test_fixture_package_validates(self):
        manifest = validate_package(self.FIXTURE)
        self.assertEqual(manifest["name"], get_config("tiny").name)

    def test_manifest_is_what_the_exporter_writes_now(self):
        # Every field but the files' hashes (weights and fitted tables may differ in the last bit
        # on another BLAS): a field the exporter gained since must be in the fixture too.
        import contextlib
        import io
        from export import __main__ as export_package

        def fields(manifest):
            return {**manifest, "files": [{k: v for k, v in f.items() if k != "sha256"} for f in manifest["files"]]}

        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            export_package.main(["--config", "tiny", "--random", "--seed", "0", "--out", tmp, "--no-fp16"])
            with open(os.path.join(tmp, "manifest.json")) as f:
                fresh = json.load(f)
        with open(os.path.join(self.FIXTURE, "manifest.json")) as f:
            committed = json.load(f)
        self.assertEqual(fields(committed), fields(fresh))

    def test_golden_traces_match_the_reference(self):
        with open(os.path.join(self.FIXTURE, "golden.json")) as f:
            golden = json.load(f)
        self.assertEqual([c["name"] for c in golden["cases"]], [c.name for c in DEFAULT_CASES])
        model = HartModel.random(get_config("tiny"), 0)
        with tempfile.TemporaryDirectory() as tmp:
            fresh = write_golden(model, tmp)
            for old, new in zip(golden["cases"], fresh["cases"]):
                self.assertEqual(old["inputIds"], new["inputIds"])
                self.assertEqual((old["settings"], old["guidance"]), (new["settings"], new["guidance"]))
                old_bin = np.fromfile(os.path.join(self.FIXTURE, old["bin"]), dtype=np.uint8)
                new_bin = np.fromfile(os.path.join(tmp, new["bin"]), dtype=np.uint8)
                self.assertEqual(old["arrays"].keys(), new["arrays"].keys())
                for name, entry in old["arrays"].items():
                    a = _array(old_bin, entry)
                    b = _array(new_bin, new["arrays"][name])
                    if entry["dtype"] == "int32":
                        np.testing.assert_array_equal(a, b, err_msg=f"{old['name']} {name}")
                    elif entry["dtype"] == "uint8":
                        # floor(255·v) may step by one where another BLAS rounds v differently.
                        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
                        self.assertLessEqual(int(diff.max()), 1, f"{old['name']} {name}")
                    else:
                        # Relative to the array's largest magnitude: near-zero entries carry BLAS
                        # noise, and the diffusion's first step amplifies it (×20291 before clipping).
                        scale = max(float(np.abs(b).max()), 1e-6)
                        self.assertLess(float(np.abs(a - b).max()) / scale, 1e-4, f"{old['name']} {name}")


def _array(data: np.ndarray, entry: dict) -> np.ndarray:
    dtype = {"float64": "<f8", "float32": "<f4", "int32": "<i4", "uint8": "u1"}[entry["dtype"]]
    count = int(np.prod(entry["shape"]))
    return np.frombuffer(data.tobytes(), dtype, count, entry["offset"]).reshape(entry["shape"])
