"""Tokenizer training on a tiny config: both stages run, the result loads, a rerun resumes; tensors
stay on the model's device."""
import contextlib
import io
import os
import shutil
import tempfile
import unittest

import numpy as np
import torch

from hart.config import get_config
from hart.saved import load_saved
from hart.vae import HybridTokenizer, load_tokenizer
from lab import train_tokenizer as tt


def tiny_argv(folder, minutes):
    c = get_config("tiny")
    return ["--out", os.path.join(folder, "run"), "--data", os.path.join(folder, "data"), "--images", "24",
            "--image-size", str(c.vae.image_size), "--ch", str(c.vae.ch),
            "--ch-mult", ",".join(map(str, c.vae.ch_mult)), "--channels", str(c.quantizer.channels),
            "--vocab", str(c.quantizer.vocab_size), "--patch-nums", ",".join(map(str, c.quantizer.patch_nums)),
            "--batch", "4", "--held-out", "4", "--minutes", str(minutes), "--clock", "wall",
            "--stage2-fraction", "0.5", "--eval-seconds", "1e9", "--checkpoint-minutes", "1e9", "--threads", "1"]


class TinyTokenizerRun(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="train_tokenizer_")

    def tearDown(self):
        shutil.rmtree(self.folder, ignore_errors=True)

    def train(self, minutes):
        with contextlib.redirect_stdout(io.StringIO()):   # the progress log echoes to stdout
            tt.main(tiny_argv(self.folder, minutes))

    def test_both_stages_then_a_longer_budget_resumes(self):
        self.train(0.05)
        run = os.path.join(self.folder, "run")
        first = load_saved(os.path.join(run, "checkpoint.pt"))
        self.assertEqual(first["stage"], 2)
        self.assertTrue(first["done"])
        self.assertGreater(first["step"], 2)
        tokenizer = load_tokenizer(os.path.join(run, "tokenizer.pt"))
        self.assertIsInstance(tokenizer, HybridTokenizer)
        with open(os.path.join(run, "log.txt")) as f:
            log = f.read()
        self.assertIn("stage 2: encoder, quant_conv and codebook frozen", log)
        self.assertIn("device cpu", log)
        # Stage 2 leaves the encoder and codebook alone.
        stage2_frozen = {k: v for k, v in tokenizer.state_dict().items() if k.startswith(("encoder.", "quantize."))}
        self.train(0.08)
        second = load_saved(os.path.join(run, "checkpoint.pt"))
        self.assertGreater(second["step"], first["step"])
        self.assertGreater(second["elapsed"], first["elapsed"])
        again = load_tokenizer(os.path.join(run, "tokenizer.pt")).state_dict()
        for name, value in stage2_frozen.items():
            self.assertTrue(torch.equal(again[name], value), name)

    def test_the_decoder_continues_from_a_tokenizer_file(self):
        self.train(0.05)
        start = load_tokenizer(os.path.join(self.folder, "run", "tokenizer.pt")).state_dict()
        argv = tiny_argv(self.folder, 0.03)
        argv[argv.index("--out") + 1] = os.path.join(self.folder, "more")
        with contextlib.redirect_stdout(io.StringIO()):
            tt.main(argv + ["--decoder-from", os.path.join(self.folder, "run", "tokenizer.pt")])
        with open(os.path.join(self.folder, "more", "log.txt")) as f:
            self.assertIn("stage 2 only", f.read())
        after = load_tokenizer(os.path.join(self.folder, "more", "tokenizer.pt")).state_dict()
        encoding = [k for k in start if k.startswith(("encoder.", "quant_conv.", "quantize."))]
        self.assertTrue(encoding)
        for name in encoding:
            self.assertTrue(torch.equal(after[name], start[name]), name)   # the tokens stay the same
        self.assertTrue(any(not torch.equal(after[k], start[k]) for k in start if k.startswith("decoder.")))
        # A longer budget resumes it as a decoder-only run: the rate stays on its stage-2 cosine.
        argv[argv.index("--minutes") + 1] = "0.05"
        with contextlib.redirect_stdout(io.StringIO()):
            tt.main(argv + ["--decoder-from", os.path.join(self.folder, "run", "tokenizer.pt")])
        with open(os.path.join(self.folder, "more", "log.txt")) as f:
            log = f.read()
        self.assertIn("resume at step", log)
        self.assertNotIn("end of stage 1", log)
        self.assertTrue(load_saved(os.path.join(self.folder, "more", "checkpoint.pt"))["decoder_only"])


class DevicePlacement(unittest.TestCase):
    def test_both_stages_forward_on_the_model_device(self):
        # torch's meta device (shapes only) fails any op that meets a CPU tensor. It has no
        # convolution backward or bincount in torch 1.13, so this checks the forward passes.
        meta = torch.device("meta")
        c = get_config("tiny")
        model = HybridTokenizer(c.vae, c.quantizer).to(meta)
        images = np.zeros((6, c.vae.image_size, c.vae.image_size, 3), np.uint8)
        x = tt.sample_batch(images, 4, np.random.default_rng(0), meta)
        queries = []
        f_hat, vq_loss, idx_list = model.quantize(model.encode_continuous(x), queries)
        loss = tt.reconstruction_loss(model.decode_raw(f_hat), x, 0.2) + vq_loss
        self.assertEqual(loss.device, meta)
        self.assertTrue(all(i.device == meta for i in idx_list) and queries and queries[0].device == meta)
        rec, _, _, _ = model(x, skip_continuous_prob=0.5)
        self.assertEqual(tt.reconstruction_loss(rec, x, 0.2).device, meta)
        self.assertEqual(tt.CodeUsage(c.quantizer.vocab_size, device=meta).hits.device, meta)


if __name__ == "__main__":
    unittest.main()
