"""The timed reference: the same trace as the plain sampler, every stage named, draws on disk."""
import os
import tempfile
import unittest

import numpy as np

from bench.reference import STAGES, load_reference, timed_generate, write_draws
from hart import sampler
from hart.config import get_config
from hart.sampler import generate, make_draws

PROMPT = "a red circle on a blue background"


class TimedReferenceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = load_reference("random:tiny:0")
        cls.settings = cls.model.config.sampling
        cls.draws = make_draws(cls.model.config, 1, 5, smooth=True, residual=True)

    def test_same_trace_and_every_stage(self):
        plain = generate(self.model, [PROMPT], self.settings, self.draws)
        trace, ms = timed_generate(self.model, PROMPT, self.settings, self.draws)
        np.testing.assert_array_equal(trace.pixels, plain.pixels)
        for a, b in zip(trace.scales, plain.scales):
            np.testing.assert_array_equal(a["tokens"], b["tokens"])
        self.assertEqual(tuple(ms), STAGES)
        self.assertEqual(ms["preview"], 0.0)
        for stage in ("textEncoder", "transformer", "head", "sampling", "scaleUpdate", "decoder", "total"):
            self.assertGreater(ms[stage], 0.0, stage)
        self.assertEqual(ms["diffusion"] > 0.0, bool(self.settings.residual))
        self.assertLessEqual(sum(v for k, v in ms.items() if k != "total"), ms["total"] * 1.001)

    def test_leaves_the_model_and_the_sampler_as_they_were(self):
        timed_generate(self.model, PROMPT, self.settings, self.draws)
        tr = self.model.transformer
        for obj in (tr, tr.diffloss, self.model.tokenizer, self.model.tokenizer.quantize):
            self.assertFalse([n for n, v in vars(obj).items() if getattr(v, "__name__", "") == "timed"])
        self.assertEqual(sampler.filter_logits.__name__, "filter_logits")
        self.assertEqual(sampler.to_pixels.__name__, "to_pixels")

    def test_random_reference_is_the_export_recipe(self):
        again = load_reference("random:tiny:0")
        for (name, a), (_, b) in zip(self.model.transformer.state_dict().items(), again.transformer.state_dict().items()):
            self.assertTrue(bool((a == b).all()), name)
        self.assertEqual(get_config("tiny").name, self.model.config.name)

    def test_draws_file_layout(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "draws.bin")
            layout = write_draws(self.draws, path)
            data = open(path, "rb").read()
        k = len(self.model.config.patch_nums)
        self.assertEqual(len([n for n in layout if n.startswith("tokenUniforms.")]), k)
        self.assertEqual(len([n for n in layout if n.startswith("gumbelUniforms.")]), k)
        self.assertEqual(len([n for n in layout if n.startswith("diffusionNoise.")]), self.model.config.diffusion.steps)
        last = layout[f"tokenUniforms.{k - 1}"]
        got = np.frombuffer(data, "<f8", last["length"], last["offset"])
        np.testing.assert_array_equal(got, self.draws.token_uniforms[k - 1])
        noise = layout["diffusionNoise.7"]
        np.testing.assert_array_equal(np.frombuffer(data, "<f4", noise["length"], noise["offset"]), self.draws.diffusion_noise[7])


if __name__ == "__main__":
    unittest.main()
