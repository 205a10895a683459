"""Self-correcting token maps (lab/generator/self_correction.py): the inputs hold wrong tokens, the targets
repair them, and nothing is lost of the latent."""
import unittest

import torch

from hart.config import get_config
from hart.vae import HybridTokenizer
from lab.generator.self_correction import latent_from_cache, self_correct


class SelfCorrection(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        config = get_config("tiny")
        self.quantizer = HybridTokenizer(config.vae, config.quantizer).quantize
        side, channels = config.latent_side, config.latent_channels
        self.latent = torch.randn(6, channels, side, side) * 0.5
        idx_list, _, residual = self.quantizer.encode_indices(self.latent)
        self.indices = torch.cat([m.flatten(1) for m in idx_list], 1)
        self.residual = residual.flatten(2).transpose(1, 2)
        self.coarse = sum(pn * pn for pn in config.patch_nums[:-1])

    def test_the_cache_gives_back_the_latent(self):
        f = latent_from_cache(self.quantizer, self.indices, self.residual)
        torch.testing.assert_close(f, self.latent, atol=1e-5, rtol=0)

    def test_rate_zero_is_plain_teacher_forcing(self):
        shown, targets, residual = self_correct(self.quantizer, self.indices, self.residual, 0.0)
        self.assertTrue(torch.equal(shown, self.indices))
        self.assertTrue(torch.equal(targets, self.indices))
        torch.testing.assert_close(residual, self.residual, atol=1e-5, rtol=0)

    def test_wrong_tokens_are_shown_and_the_later_scales_repair_them(self):
        g = torch.Generator().manual_seed(1)
        shown, targets, residual = self_correct(self.quantizer, self.indices, self.residual, 0.6, g)
        wrong = shown[:, :self.coarse] != targets[:, :self.coarse]
        self.assertTrue(0.05 < wrong.float().mean() < 0.6)
        self.assertTrue(torch.equal(shown[:, self.coarse:], targets[:, self.coarse:]))   # last scale: never
        # Built from the shown tokens, f_hat plus the new residual is still the whole latent.
        f = latent_from_cache(self.quantizer, shown, residual)
        torch.testing.assert_close(f, self.latent, atol=1e-5, rtol=0)
        # Each target is the nearest code to what the shown tokens before it left of the latent.
        q, k, pn = self.quantizer, 1, self.quantizer.patch_nums[1]
        first = q.scale_contribution(q.lookup(shown[:, :1].view(-1, 1, 1)), 0)
        rest = q.downsample(self.latent - first, k).permute(0, 2, 3, 1).reshape(-1, self.latent.shape[1])
        codebook = q.embedding.weight
        nearest = torch.cdist(rest, codebook).argmin(1).view(-1, pn * pn)
        self.assertTrue(torch.equal(targets[:, 1:1 + pn * pn], nearest))

    def test_each_image_draws_its_own_rate(self):
        g = torch.Generator().manual_seed(2)
        shown, targets, _ = self_correct(self.quantizer, self.indices, self.residual, 0.9, g)
        per_image = (shown[:, :self.coarse] != targets[:, :self.coarse]).float().mean(1)
        self.assertGreater(float(per_image.max() - per_image.min()), 0.1)


if __name__ == "__main__":
    unittest.main()
