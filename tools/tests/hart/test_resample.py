import unittest

import torch
import torch.nn.functional as F

from hart.resample import apply_separable, area_matrix, bicubic_matrix

PATCH_NUMS_16 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_64 = (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64)


class ResampleMatchesTorch(unittest.TestCase):
    def check_sizes(self, sizes, full):
        gen = torch.Generator().manual_seed(0)
        for pn in sizes:
            small = torch.randn(2, 3, pn, pn, generator=gen)
            big = torch.randn(2, 3, full, full, generator=gen)
            up_ref = F.interpolate(small, size=(full, full), mode="bicubic", align_corners=False)
            up = apply_separable(bicubic_matrix(full, pn), small)
            self.assertLess((up - up_ref).abs().max().item(), 1e-5, f"bicubic {pn}->{full}")
            down_ref = F.interpolate(big, size=(pn, pn), mode="area")
            down = apply_separable(area_matrix(pn, full), big)
            self.assertLess((down - down_ref).abs().max().item(), 1e-5, f"area {full}->{pn}")

    def test_patch_nums_to_16(self):
        self.check_sizes(PATCH_NUMS_16, 16)

    def test_patch_nums_to_64(self):
        self.check_sizes(PATCH_NUMS_64, 64)

    def test_non_square_axis_pairs(self):
        # Sizes that do not divide each other exercise the overlapping area windows and
        # the edge clamping of the cubic taps.
        x = torch.randn(1, 1, 7, 7)
        ref = F.interpolate(x, size=(3, 3), mode="area")
        self.assertLess((apply_separable(area_matrix(3, 7), x) - ref).abs().max().item(), 1e-6)
        ref = F.interpolate(x, size=(11, 11), mode="bicubic", align_corners=False)
        self.assertLess((apply_separable(bicubic_matrix(11, 7), x) - ref).abs().max().item(), 1e-5)

    def test_rows_are_partitions_of_unity(self):
        for pn in PATCH_NUMS_64:
            self.assertTrue(torch.allclose(bicubic_matrix(64, pn).sum(1), torch.ones(64), atol=1e-6))
            self.assertTrue(torch.allclose(area_matrix(pn, 64).sum(1), torch.ones(pn), atol=1e-6))

    def test_same_size_is_identity(self):
        self.assertTrue(torch.equal(bicubic_matrix(16, 16), torch.eye(16)))
        self.assertTrue(torch.equal(area_matrix(16, 16), torch.eye(16)))


if __name__ == "__main__":
    unittest.main()
