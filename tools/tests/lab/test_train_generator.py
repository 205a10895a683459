"""Generator training on the tiny config: the fast forward matches the reference, loss falls, resume works."""
import contextlib
import dataclasses
import io
import os
import shutil
import tempfile
import time
import unittest

import numpy as np
import torch

from hart.config import get_config
from hart.model import HartModel
from hart.vae import HybridTokenizer, load_tokenizer, tokenizer_blob
from lab import train_generator as tg
from lab.data import encode_images
from lab.generator import batches, forward, loss as training_loss, model as gm
from lab.shapes.dataset import build_cache
from lab.train_utils import cosine_lr

TINY_SIZE = dict(width=64, depth=2, heads=2, text_width=32, text_depth=1, text_heads=2,
                 diff_width=32, diff_depth=2)


def tiny_args(folder, *extra):
    argv = ["--tokenizer", os.path.join(folder, "tokenizer.pt"), "--out", os.path.join(folder, "run"),
            "--config", "tiny", "--data", os.path.join(folder, "data"), "--batch", "8", "--lr", "3e-3",
            "--warmup", "0.0", "--held-out", "4", "--diff-tokens", "8", "--log-seconds", "1e9",
            "--checkpoint-minutes", "1e9", "--snapshot-minutes", "0", "--minutes", "10", "--threads", "1"]
    for key, value in TINY_SIZE.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    return argv + list(extra)


class Device(unittest.TestCase):
    def test_auto_takes_the_gpu_when_there_is_one_and_a_missing_gpu_is_refused(self):
        from lab.train_utils import resolve_device
        self.assertEqual(resolve_device("cpu").type, "cpu")
        if torch.cuda.is_available():
            self.assertEqual(resolve_device("auto").type, "cuda")
        else:
            self.assertEqual(resolve_device("auto").type, "cpu")
            with self.assertRaises(SystemExit) as refused:
                resolve_device("cuda")
            self.assertIn("sees no GPU", str(refused.exception))


class SavedTokenizer(unittest.TestCase):
    def test_a_model_file_and_a_tokenizer_file_give_the_same_tokenizer(self):
        model = HartModel.random(get_config("tiny"), 0)
        saved = model.checkpoint()
        blob = tokenizer_blob(saved)
        self.assertEqual(blob["config"]["vae"], model.config.to_dict()["vae"])
        self.assertEqual(blob["config"]["quantizer"], model.config.to_dict()["quantizer"])
        self.assertIs(tokenizer_blob(blob), blob)
        for source in (saved, blob):
            rebuilt = load_tokenizer(source)
            # Saved configs hold lists; the rebuilt configs are the model's own (tuples again).
            self.assertEqual(rebuilt.vae_config, model.config.vae)
            self.assertEqual(rebuilt.quantizer_config, model.config.quantizer)
            for name, value in model.tokenizer.state_dict().items():
                self.assertTrue(torch.equal(rebuilt.state_dict()[name], value), name)


class TrainingForward(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = HartModel.random(get_config("shapes-128"), seed=1)
        c = self.model.config
        self.context = torch.randn(2, c.context_tokens, c.context_dim)
        self.inputs = torch.randn(2, sum(pn * pn for pn in c.patch_nums[1:]), c.latent_channels)

    def test_equals_block_causal_reference(self):
        tr = self.model.transformer
        with torch.no_grad():
            ref_logits, ref_hidden = tr.forward_train(self.context, [5, 1], self.inputs)
            logits, hidden = forward.training_forward(tr, self.context, [5, 1], self.inputs, forward.RopeCache(tr))
        self.assertEqual(logits.shape, ref_logits.shape)
        self.assertLess((logits - ref_logits).abs().max().item(), 1e-4)
        self.assertLess((hidden - ref_hidden).abs().max().item(), 1e-4)

    def test_recording_the_attention_on_the_text_changes_nothing(self):
        tr, c = self.model.transformer, self.model.config
        record = []
        with torch.no_grad():
            plain, _ = forward.training_forward(tr, self.context, [5, 1], self.inputs, forward.RopeCache(tr))
            recorded, _ = forward.training_forward(tr, self.context, [5, 1], self.inputs, forward.RopeCache(tr),
                                              record=record)
        self.assertTrue(torch.equal(plain, recorded))
        groups = forward.level_groups(c)
        self.assertEqual(len(record), c.depth)
        for levels in record:
            self.assertEqual([w.shape for w in levels],
                             [(2, end - start, c.context_tokens) for start, end in groups])
            # Weights on the text: non-negative, at most the whole softmax; the text level sees only text.
            for w in levels:
                self.assertGreaterEqual(w.min().item(), 0.0)
                self.assertLessEqual(w.sum(-1).max().item(), 1.0 + 1e-5)
            self.assertLess((levels[0].sum(-1) - 1).abs().max().item(), 1e-5)

    def test_thinned_last_scale_keeps_earlier_scales_and_picks_the_right_tokens(self):
        tr, c = self.model.transformer, self.model.config
        side2 = c.latent_side ** 2
        order = torch.stack([torch.randperm(side2)[:10] for _ in range(2)])
        with torch.no_grad():
            full, _ = forward.training_forward(tr, self.context, [5, 3], self.inputs, forward.RopeCache(tr))
            thin, hidden = forward.training_forward(tr, self.context, [5, 3], self.inputs, forward.RopeCache(tr), order)
        self.assertEqual(thin.shape[1], full.shape[1] - side2 + 10)
        self.assertEqual(hidden.shape[1], 10)
        # Earlier scales never see the last scale (block-causal): their logits are unchanged.
        self.assertLess((thin[:, :-10] - full[:, :-side2]).abs().max().item(), 1e-4)
        # Kept last-scale tokens see fewer same-level keys, so they differ, but not wildly.
        self.assertGreater((thin[:, -10:] - full[:, -side2:].gather(
            1, order[:, :, None].expand(-1, -1, c.vocab_size))).abs().max().item(), 0.0)

    def test_scale_weights(self):
        c = self.model.config
        w = training_loss.scale_weights(c, 0.0, c.latent_side ** 2)
        self.assertAlmostEqual(w.sum().item(), 1.0, places=5)
        self.assertTrue(torch.allclose(w, torch.full_like(w, w[0].item())))
        w = training_loss.scale_weights(c, 1.0, c.latent_side ** 2)
        self.assertAlmostEqual(w[0].item(), 1.0 / c.num_scales, places=5)   # equal weight per scale
        self.assertAlmostEqual(w[-256:].sum().item(), 1.0 / c.num_scales, places=5)


class ObjectsAndForms(unittest.TestCase):
    """Weighting the loss toward object tokens and sampling caption forms unevenly."""

    def tiny_data(self, objects):
        c = get_config("tiny")
        rng = np.random.default_rng(0)
        tokens = sum(pn * pn for pn in c.patch_nums)
        encoded = {"indices": rng.integers(0, c.vocab_size, (4, tokens)).astype(np.int16),
                   "residual": rng.standard_normal((4, c.latent_side ** 2, c.latent_channels)).astype(np.float16),
                   "captions": ["a red circle on a blue background"] * 4, "objects": objects(tokens)}
        return c, batches.EncodedData(c, encoded)

    def test_object_mask_follows_the_thinned_last_scale(self):
        objects = torch.tensor([[True, False, True, False, False, True]])   # 2 coarse + 4 last-scale tokens
        mask = training_loss.object_target_mask(objects, 4, torch.tensor([[1, 3]]))    # keeps last-scale tokens 1 and 3
        self.assertEqual(mask.tolist(), [[1.0, 0.0, 0.0, 1.0]])
        self.assertEqual(training_loss.object_target_mask(objects, 4, None).tolist(), [[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]])

    def test_object_weight_moves_the_loss_to_object_tokens_only(self):
        model = HartModel.random(get_config("tiny"), 0)

        def loss(objects, weight):
            c, data = self.tiny_data(objects)
            args = tg.parse_args(["--fp32", "--last-keep", "0", "--object-weight", str(weight)])
            with torch.no_grad():
                out = training_loss.losses(model, data.batch(np.arange(4)), args, forward.RopeCache(model.transformer),
                                torch.Generator().manual_seed(0), train=False)
            # (the diffusion draws differ per call)
            return float(out["loss"] - out["diff"]), float(out["ce"]), float(out["ce_object"])

        plain, ce, _ = loss(lambda n: np.zeros((4, n), bool), 1.0)
        # All tokens alike (all background or all object): the weights renormalise to the plain loss.
        self.assertAlmostEqual(loss(lambda n: np.zeros((4, n), bool), 4.0)[0], plain, places=5)
        everywhere = loss(lambda n: np.ones((4, n), bool), 4.0)
        self.assertAlmostEqual(everywhere[0], plain, places=5)
        self.assertAlmostEqual(everywhere[2], ce, places=5)   # every token is an object token
        # Some tokens marked: the loss changes, the reported plain token-mean CE does not.
        mixed, mixed_ce, _ = loss(lambda n: np.arange(n)[None].repeat(4, 0) % 3 == 0, 4.0)
        self.assertNotAlmostEqual(mixed, plain, places=4)
        self.assertAlmostEqual(mixed_ce, ce, places=6)

    def test_form_weights_parse_and_refuse_unknown_forms(self):
        self.assertEqual(tg.parse_args(["--form-weights", "relation=2,count=1.5"]).form_weights,
                         {"relation": 2.0, "count": 1.5})
        self.assertEqual(tg.parse_args([]).form_weights, {})
        for bad in ("relations=2", "count", "count=-1"):
            with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                tg.parse_args(["--form-weights", bad])

    def test_lr_floor_is_a_share_of_the_rate(self):
        # The cosine starts at the full rate after warm-up and ends at floor·rate.
        self.assertAlmostEqual(cosine_lr(1e-3, 0.05, warmup=0.05, floor=0.005), 1e-3)
        self.assertAlmostEqual(cosine_lr(1e-3, 1.0, warmup=0.05, floor=0.005), 5e-6)
        self.assertAlmostEqual(cosine_lr(1e-3, 1.0, warmup=0.05), 1e-4)
        self.assertEqual(tg.parse_args([]).lr_floor, 0.1)
        self.assertEqual(tg.parse_args(["--lr-floor", "0.005"]).lr_floor, 0.005)
        for bad in ("-0.1", "1.5"):
            with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                tg.parse_args(["--lr-floor", bad])

    def test_sampling_weights_scale_each_forms_share(self):
        c = get_config("tiny")
        captions = ["a red circle on a blue background", "two green squares on a white background",
                    "a red circle left of a blue square on a white background",
                    "a small yellow square on a black background"]
        encoded = {"indices": np.zeros((4, sum(pn * pn for pn in c.patch_nums)), np.int16),
                   "residual": np.zeros((4, c.latent_side ** 2, c.latent_channels), np.float16), "captions": captions}
        data = batches.EncodedData(c, encoded)
        self.assertIsNone(data.sampling_weights({}))
        self.assertIsNone(data.sampling_weights({"count": 1.0}))
        p = data.sampling_weights({"relation": 3.0, "count": 2.0})
        np.testing.assert_allclose(p, np.array([1.0, 2.0, 3.0, 1.0]) / 7.0)


class DevicePlacement(unittest.TestCase):
    def test_a_training_step_keeps_every_tensor_on_the_model_device(self):
        # On the "meta" device (shapes only) any tensor left on the CPU makes an op fail, so a
        # step that runs there will not mix devices on a GPU either. (Autocast knows only CPU
        # and CUDA, hence --fp32 here.)
        meta = torch.device("meta")
        model = HartModel.random(get_config("tiny"), 0)
        gm.keep_fp32_residual_stream(model)
        model.to(meta)
        c = model.config
        rng = np.random.default_rng(0)
        encoded = {"indices": rng.integers(0, c.vocab_size, (6, sum(pn * pn for pn in c.patch_nums))).astype(np.int16),
                   "residual": rng.standard_normal((6, c.latent_side ** 2, c.latent_channels)).astype(np.float16),
                   "captions": ["a red circle on a blue background", "two green squares on a white background",
                                "a red circle left of a blue square on a white background"] * 2}
        data = batches.EncodedData(c, encoded, meta)
        args = tg.parse_args(["--fp32", "--last-keep", "4", "--diff-tokens", "4", "--cond-drop", "0.5",
                              "--self-correct", "0.3", "--binding-weight", "1"])
        rope = forward.RopeCache(model.transformer)
        out = training_loss.losses(model, data.batch(np.arange(4)), args, rope, torch.Generator().manual_seed(0))
        out["loss"].backward()
        self.assertTrue(all(v.device == meta for v in out.values()))
        self.assertTrue(all(p.grad is None or p.grad.device == meta for p in model.transformer.parameters()))
        with torch.no_grad():
            held = training_loss.losses(model, data.batch(np.arange(6)), args, rope, torch.Generator().manual_seed(0), train=False)
        self.assertEqual(held["ce"].device, meta)
        ema = gm.EMA([model.transformer, model.text_encoder], 0.99)
        ema.update(1)
        ema.load([{k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shadow.items()} for shadow in ema.state()])
        self.assertTrue(all(v.device == meta for shadow in ema.state() for v in shadow.values()))
        size = c.image_size
        indices, residual = encode_images(model.tokenizer, np.zeros((2, size, size, 3), np.uint8), bf16=False)
        self.assertEqual((indices.device, residual.device), (meta, meta))


class TinyRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="train_generator_")
        config = get_config("tiny")
        torch.manual_seed(0)
        tokenizer = HybridTokenizer(config.vae, config.quantizer)
        torch.save({"state_dict": tokenizer.state_dict(),
                    "config": {"vae": dataclasses.asdict(config.vae), "quantizer": dataclasses.asdict(config.quantizer)}},
                   os.path.join(cls.folder, "tokenizer.pt"))
        build_cache(os.path.join(cls.folder, "data"), 24, seed=0, size=config.image_size, log_every=0)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.folder, ignore_errors=True)

    def batch_loss(self, model, data, args):
        with torch.no_grad():
            out = training_loss.losses(model, data.batch(np.arange(16)), args, forward.RopeCache(model.transformer),
                            torch.Generator().manual_seed(0), train=False)
        return float(out["ce"]), float(out["diff"])

    def test_loss_falls_and_resume_continues(self):
        run = os.path.join(self.folder, "run")
        with contextlib.redirect_stdout(io.StringIO()):
            tg.main(tiny_args(self.folder, "--max-steps", "40"))
        first = torch.load(os.path.join(run, "checkpoint.pt"))
        self.assertEqual(first["step"], 40)
        for name in ("transformer", "text_encoder", "ema", "optimizer"):
            self.assertIn(name, first)

        # The exported model (EMA weights) predicts the training tokens far better than the init.
        args = tg.parse_args(tiny_args(self.folder))
        trained = HartModel.from_checkpoint(os.path.join(run, "model.pt"))
        self.assertEqual(torch.load(os.path.join(run, "model.pt"))["step"], 40)
        fresh = HartModel.from_checkpoint(os.path.join(run, "model.pt"))
        gm.init_weights(fresh)
        data = batches.EncodedData(trained.config, np.load(os.path.join(run, "encoded.npz")))
        ce_trained, _ = self.batch_loss(trained, data, args)
        ce_fresh, _ = self.batch_loss(fresh, data, args)
        self.assertLess(ce_trained, ce_fresh - 0.3)

        with contextlib.redirect_stdout(io.StringIO()):
            tg.main(tiny_args(self.folder, "--max-steps", "45"))
        second = torch.load(os.path.join(run, "checkpoint.pt"))
        self.assertEqual(second["step"], 45)
        self.assertGreater(second["elapsed_s"], first["elapsed_s"])
        with open(os.path.join(run, "log.txt")) as f:
            self.assertIn("resume at step 40", f.read())
        # The resumed run started from the saved weights, not from a fresh init.
        resumed, _ = self.batch_loss(HartModel.from_checkpoint(os.path.join(run, "model.pt")), data, args)
        self.assertLess(resumed, ce_fresh - 0.3)

        # A model file alone (the committed checkpoint: EMA weights, no optimizer) also continues,
        # without the tokenizer file, and keeps its sampling defaults from the command line.
        argv = tiny_args(self.folder, "--max-steps", "47", "--resume-from", os.path.join(run, "model.pt"),
                         "--top-k", "7")
        argv = argv[2:]                                   # drop --tokenizer
        argv[argv.index("--out") + 1] = os.path.join(self.folder, "run2")
        with contextlib.redirect_stdout(io.StringIO()):
            tg.main(argv)
        third = torch.load(os.path.join(self.folder, "run2", "model.pt"))
        self.assertEqual(third["step"], 47)
        self.assertEqual(third["config"]["sampling"]["top_k"], 7)
        continued, _ = self.batch_loss(HartModel.from_checkpoint(third), data, args)
        self.assertLess(continued, ce_fresh - 0.3)

    def test_a_new_stage_restarts_the_schedule_and_stops_by_the_deadline(self):
        with contextlib.redirect_stdout(io.StringIO()):
            tg.main(tiny_args(self.folder, "--max-steps", "3", "--out", os.path.join(self.folder, "base")))
        base = os.path.join(self.folder, "base", "model.pt")
        self.assertGreater(torch.load(base)["elapsed_s"], 0)
        stage = os.path.join(self.folder, "stage")
        argv = tiny_args(self.folder, "--resume-from", base, "--restart-clock", "--minutes", "30",
                         "--stop-at", str(time.time() + 36), "--out", stage)
        with contextlib.redirect_stdout(io.StringIO()):
            tg.main(argv)
        with open(os.path.join(stage, "log.txt")) as f:
            log = f.read()
        self.assertIn("new stage: the schedule counts from 0", log)
        budget = float(log.split("budget shrunk to ")[1].split(" min")[0])
        self.assertLess(budget, 1.0)          # 36 s left, minus the 30 s kept for saving
        saved = torch.load(os.path.join(stage, "model.pt"))
        # The stage's own time, near its shrunk budget: not the base run's time plus 30 minutes.
        self.assertLess(saved["elapsed_s"], 60 * budget + 5)
        self.assertGreater(saved["elapsed_s"], 60 * budget - 1)
        self.assertGreater(saved["step"], torch.load(base)["step"])


if __name__ == "__main__":
    unittest.main()


class EncodingFingerprint(unittest.TestCase):
    """The encoded cache stays valid when only the decoder changes (tokenizer stage 2 continued)."""

    def test_decoder_weights_do_not_change_it_encoder_weights_do(self):
        from lab.data import tokenizer_fingerprint
        c = get_config("tiny")
        torch.manual_seed(0)
        tokenizer = HybridTokenizer(c.vae, c.quantizer)
        before = tokenizer_fingerprint(tokenizer)
        with torch.no_grad():
            next(tokenizer.decoder.parameters()).add_(1.0)
            next(tokenizer.post_quant_conv.parameters()).add_(1.0)
        self.assertEqual(tokenizer_fingerprint(tokenizer), before)
        for module in (tokenizer.encoder, tokenizer.quant_conv, tokenizer.quantize):
            with torch.no_grad():
                next(module.parameters()).add_(1.0)
            changed = tokenizer_fingerprint(tokenizer)
            self.assertNotEqual(changed, before)
            before = changed


class SlimCheckpoint(unittest.TestCase):
    def test_float16_generator_and_decoder_float32_encoding_and_loadable(self):
        from lab.data import ENCODING_MODULES, tokenizer_fingerprint
        from lab.slim_checkpoint import slim
        model = HartModel.random(get_config("tiny"), 0)
        full = dict(model.checkpoint(), step=12, elapsed_s=34.0)
        small = slim(full)
        self.assertTrue(all(v.dtype == torch.float16 for v in small["transformer"].values() if v.is_floating_point()))
        floats = {k: v.dtype for k, v in small["tokenizer"].items() if v.is_floating_point()}
        self.assertTrue(any(k.startswith("decoder.") for k in floats))
        for name, dtype in floats.items():
            self.assertEqual(dtype, torch.float32 if name.startswith(ENCODING_MODULES) else torch.float16, name)
        self.assertEqual((small["step"], small["elapsed_s"]), (12, 34.0))
        loaded = HartModel.from_checkpoint(small)
        for name, value in model.transformer.state_dict().items():
            got = loaded.transformer.state_dict()[name]
            self.assertEqual(got.dtype, value.dtype, name)
            self.assertLessEqual((got - value).abs().max().item(), 1e-3 * max(1.0, value.abs().max().item()), name)
        self.assertEqual(loaded.config.sampling, model.config.sampling)
        chosen = HartModel.from_checkpoint(slim(full, guided_scales=6)).config.sampling
        self.assertEqual(chosen, dataclasses.replace(model.config.sampling, guided_scales=6))
        self.assertEqual(full["config"]["sampling"].get("guided_scales", 0), 0)   # the input is left alone
        # The encoding half is bit-exact, so a cache encoded before slimming stays valid.
        self.assertEqual(tokenizer_fingerprint(loaded.tokenizer), tokenizer_fingerprint(model.tokenizer))
        for name, value in model.tokenizer.state_dict().items():
            got = loaded.tokenizer.state_dict()[name]
            self.assertEqual(got.dtype, value.dtype, name)
            if name.startswith(ENCODING_MODULES):
                self.assertTrue(torch.equal(got, value), name)
            else:
                self.assertLessEqual((got - value).abs().max().item(), 1e-3 * max(1.0, value.abs().max().item()), name)


class TextWordSensitivity(unittest.TestCase):
    def test_a_changed_word_changes_the_output_and_a_dead_embedding_does_not(self):
        from lab.diagnose_text import word_sensitivity
        model = HartModel.random(get_config("shapes-128"), 0)
        r = word_sensitivity(model)
        self.assertGreater(r["object"], 1e-3)
        self.assertGreater(r["background"], 1e-3)
        self.assertEqual(len(r["blocks"]), len(model.text_encoder.blocks))
        # Make "red" and "green" the same word: the object change must vanish.
        words = model.config.text_encoder.words
        red, green = words.index("red") + 2, words.index("green") + 2
        with torch.no_grad():
            model.text_encoder.embed.weight[green] = model.text_encoder.embed.weight[red]
        self.assertLess(word_sensitivity(model)["object"], 1e-6)

    def test_word_skip_keeps_the_object_word_when_the_blocks_outputs_are_huge(self):
        # What training did to the shipped model: block outputs ~100x the word embeddings,
        # here a large constant added by every block's attention.
        from lab.diagnose_text import word_sensitivity
        base = get_config("shapes-128")
        for skip in (False, True):
            config = dataclasses.replace(base, text_encoder=dataclasses.replace(base.text_encoder, word_skip=skip))
            model = HartModel.random(config, 0)
            with torch.no_grad():
                for block in model.text_encoder.blocks:
                    block.attn.proj.bias.copy_(torch.randn(block.attn.proj.bias.shape) * 10)
            r = word_sensitivity(model)
            if skip:
                self.assertGreater(r["object"], 0.3)
            else:
                self.assertLess(r["object"], 0.05)

