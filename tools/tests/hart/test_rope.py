import math
import unittest

import numpy as np
import torch

from hart.rope import (apply_rope, cfg_image_rope, cfg_text_rope, image_rope, text_positions, text_rope)


def hf_llama_rope(positions, head_dim, theta):
    """The textbook HF-Llama 1D tables in plain torch float32, as an independent reference."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.as_tensor(positions, dtype=torch.float32)[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


class TextRopeTest(unittest.TestCase):
    def test_positions_are_cumsum_of_mask_minus_one(self):
        pos = text_positions([3, 6, 1], 6)
        expected = [[0, 1, 2, 2, 2, 2], [0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 0]]
        np.testing.assert_array_equal(pos, expected)
        mask = np.array([[1, 1, 1, 0, 0, 0]])
        np.testing.assert_array_equal(pos[0], np.cumsum(mask[0]) - 1)

    def test_matches_hf_llama_tables(self):
        positions = text_positions([5, 9], 9)
        cos, sin = text_rope(positions, 32, 10000.0)
        ref_cos, ref_sin = hf_llama_rope(positions, 32, 10000.0)
        self.assertEqual(tuple(cos.shape), (2, 9, 32))
        self.assertLess((cos - ref_cos).abs().max().item(), 2e-6)
        self.assertLess((sin - ref_sin).abs().max().item(), 2e-6)

    def test_attention_scores_depend_only_on_relative_position(self):
        torch.manual_seed(0)
        q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

        def score(pq, pk):
            cq, sq = text_rope(np.array([[pq]], dtype=np.float32), 16, 10000.0)
            ck, sk = text_rope(np.array([[pk]], dtype=np.float32), 16, 10000.0)
            return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum().item()

        self.assertAlmostEqual(score(7, 3), score(14, 10), places=4)
        self.assertNotAlmostEqual(score(7, 3), score(7, 4), places=3)

    def test_cfg_rows(self):
        cos, sin = cfg_text_rope([4], 6, 16, 10000.0)
        self.assertEqual(tuple(cos.shape), (2, 6, 16))
        # Unconditional rows sit at position 0: no rotation.
        self.assertTrue(torch.equal(cos[1], torch.ones(6, 16)))
        self.assertTrue(torch.equal(sin[1], torch.zeros(6, 16)))
        ref_cos, _ = text_rope(text_positions([4], 6), 16, 10000.0)
        self.assertTrue(torch.equal(cos[0], ref_cos[0]))


class ImageRopeTest(unittest.TestCase):
    def test_layout_is_row_row_col_col(self):
        hd, pn, side, offset, theta = 16, 3, 16, 5.0, 10000.0
        cos, sin = image_rope(pn, side, [offset], hd, theta)
        self.assertEqual(tuple(cos.shape), (1, 9, hd))
        f = [theta ** (-4.0 * i / hd) for i in range(hd // 4)]
        for r in range(pn):
            for c in range(pn):
                token = r * pn + c
                row = (r / pn) * side + offset
                col = (c / pn) * side + offset
                expected = [row * x for x in f] * 2 + [col * x for x in f] * 2
                np.testing.assert_allclose(cos[0, token].numpy(), np.cos(expected), atol=2e-6)
                np.testing.assert_allclose(sin[0, token].numpy(), np.sin(expected), atol=2e-6)

    def test_fractional_coordinates_use_hart_rounding(self):
        # pn = 3 on a 64 side: rows 0, 21.333334, 42.666668 in float32, (i / pn) · side.
        cos, sin = image_rope(3, 64, [0.0], 4, 10000.0)
        angle = np.arctan2(sin[0, :, 0].numpy(), cos[0, :, 0].numpy())
        rows = (np.arange(3, dtype=np.float32) / np.float32(3)) * np.float32(64)
        expected = np.arctan2(np.sin(rows.astype(np.float64)), np.cos(rows.astype(np.float64)))
        np.testing.assert_allclose(angle[::3], expected, atol=1e-6)

    def test_pairing_rotates_row_angle_with_column_angle(self):
        # HART's quirk: dim j (row angle) is paired with dim j + hd/2 (column angle).
        hd, pn = 8, 2
        cos, sin = image_rope(pn, 8, [2.0], hd, 10000.0)
        torch.manual_seed(1)
        q = torch.randn(1, 1, pn * pn, hd)
        out = apply_rope(q, cos, sin)[0, 0]
        half = hd // 2
        for t in range(pn * pn):
            for j in range(half):
                a_lo = math.atan2(sin[0, t, j], cos[0, t, j])
                a_hi = math.atan2(sin[0, t, j + half], cos[0, t, j + half])
                lo = q[0, 0, t, j] * math.cos(a_lo) - q[0, 0, t, j + half] * math.sin(a_lo)
                hi = q[0, 0, t, j + half] * math.cos(a_hi) + q[0, 0, t, j] * math.sin(a_hi)
                self.assertAlmostEqual(out[t, j].item(), lo.item(), places=5)
                self.assertAlmostEqual(out[t, j + half].item(), hi.item(), places=5)

    def test_cfg_offsets(self):
        cos, _ = cfg_image_rope(4, 16, [7, 3], 16, 10000.0)
        self.assertEqual(tuple(cos.shape), (4, 16, 16))
        cond, _ = image_rope(4, 16, [6, 2], 16, 10000.0)
        uncond, _ = image_rope(4, 16, [0, 0], 16, 10000.0)
        self.assertTrue(torch.equal(cos[:2], cond))
        self.assertTrue(torch.equal(cos[2:], uncond))
        self.assertFalse(torch.equal(cos[0], cos[2]))


if __name__ == "__main__":
    unittest.main()
