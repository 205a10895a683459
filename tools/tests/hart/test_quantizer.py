import unittest

import torch
import torch.nn.functional as F

from hart.quantizer import MultiScaleQuantizer, QuantizerConfig, phi_index

PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


def make_quantizer(vocab=64, channels=8, patch_nums=PATCH_NUMS, seed=0):
    torch.manual_seed(seed)
    return MultiScaleQuantizer(QuantizerConfig(vocab_size=vocab, channels=channels, patch_nums=patch_nums))


class PhiIndex(unittest.TestCase):
    def test_published_14_scale_table(self):
        expected = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
        self.assertEqual([phi_index(k, 14) for k in range(13)], expected)

    def test_10_scale_table_boundary(self):
        # k = 2 of 10 sits exactly between ticks 1/12 and 4/12 (both 5/36 away); float64 picks conv 1.
        self.assertEqual([phi_index(k, 10) for k in range(9)], [0, 0, 1, 1, 1, 2, 2, 3, 3])


class QuantizerBehaviour(unittest.TestCase):
    def test_checkpoint_key_names(self):
        keys = set(make_quantizer().state_dict().keys())
        expected = {"embedding.weight"} | {f"quant_resi.qresi_ls.{i}.{p}" for i in range(4) for p in ("weight", "bias")}
        self.assertEqual(keys, expected)

    def test_phi_formula(self):
        q = make_quantizer()
        h = torch.randn(2, 8, 16, 16)
        conv = q.quant_resi.qresi_ls[phi_index(5, 10)]
        self.assertTrue(torch.allclose(q.phi(h, 5), 0.5 * h + 0.5 * conv(h), atol=1e-6))

    def test_add_scale_matches_interpolate_and_skips_phi_at_last_scale(self):
        q = make_quantizer()
        f_hat = torch.randn(2, 8, 16, 16)
        tokens = torch.randn(2, 8, 5, 5)
        up = F.interpolate(tokens, size=(16, 16), mode="bicubic", align_corners=False)
        expected = f_hat + q.phi(up, 4)
        self.assertLess((q.add_scale(f_hat, tokens, 4) - expected).abs().max().item(), 1e-5)
        last = torch.randn(2, 8, 16, 16)
        self.assertTrue(torch.equal(q.add_scale(f_hat, last, 9), f_hat + last))

    def test_next_input_is_area_down_row_major(self):
        q = make_quantizer()
        f_hat = torch.randn(2, 8, 16, 16)
        x = q.next_input(f_hat, 3)  # pn = 4
        ref = F.interpolate(f_hat, size=(4, 4), mode="area")
        self.assertEqual(tuple(x.shape), (2, 16, 8))
        # token index row*pn + col holds the channel vector of that cell
        self.assertLess((x[:, 1 * 4 + 2] - ref[:, :, 1, 2]).abs().max().item(), 1e-6)
        self.assertLess((x - ref.flatten(2).transpose(1, 2)).abs().max().item(), 1e-6)

    def test_encode_indices_split_reconstructs(self):
        q = make_quantizer()
        f = torch.randn(3, 8, 16, 16)
        idx_list, f_hat, residual = q.encode_indices(f)
        self.assertEqual([tuple(i.shape) for i in idx_list], [(3, pn, pn) for pn in PATCH_NUMS])
        rebuilt = q.indices_to_fhat(idx_list)
        self.assertLess((rebuilt - f_hat).abs().max().item(), 1e-5)
        self.assertLess((rebuilt + residual - f).abs().max().item(), 1e-5)

    def test_last_scale_codes_are_nearest_to_remaining_residual(self):
        q = make_quantizer()
        f = torch.randn(2, 8, 16, 16)
        idx_list, f_hat, residual = q.encode_indices(f)
        # Rebuild the residual left before the last scale and check each last-scale code is its nearest codeword.
        before = f - (f_hat - q.lookup(idx_list[-1]))
        vectors = before.permute(0, 2, 3, 1).reshape(-1, 8)
        brute = torch.cdist(vectors, q.embedding.weight).argmin(1)
        self.assertTrue(torch.equal(brute, idx_list[-1].reshape(-1)))

    def test_more_scales_explain_more(self):
        # The residual VQ must reduce the error scale by scale on average (codebook fitted to the data).
        q = make_quantizer(vocab=256)
        f = torch.randn(4, 8, 16, 16) * 0.5
        with torch.no_grad():
            q.embedding.weight.copy_(f.permute(0, 2, 3, 1).reshape(-1, 8)[torch.randperm(1024)[:256]])
            for conv in q.quant_resi.qresi_ls:  # φ = identity, so the check does not depend on random convs
                conv.weight.zero_()
                conv.bias.zero_()
                conv.weight[:, :, 1, 1] = torch.eye(8)
        _, f_hat, residual = q.encode_indices(f)
        self.assertLess(residual.square().mean().item(), 0.5 * f.square().mean().item())

    def test_training_forward_straight_through_and_loss(self):
        q = make_quantizer()
        f = torch.randn(2, 8, 16, 16, requires_grad=True)
        f_hat_st, vq_loss, idx_list = q(f)
        _, f_hat, _ = q.encode_indices(f.detach())
        self.assertLess((f_hat_st - f_hat).abs().max().item(), 1e-5)
        (f_hat_st.sum() + vq_loss).backward()
        # straight-through: d(sum f_hat_st)/df = 1, plus the commitment term's gradient
        self.assertTrue(torch.isfinite(f.grad).all())
        self.assertGreater(f.grad.abs().mean().item(), 0.5)
        self.assertIsNotNone(q.embedding.weight.grad)
        self.assertGreater(q.embedding.weight.grad.abs().sum().item(), 0)
        self.assertGreater(q.quant_resi.qresi_ls[0].weight.grad.abs().sum().item(), 0)
        self.assertEqual(len(idx_list), len(PATCH_NUMS))

    def test_queries_and_dead_code_replacement(self):
        q = make_quantizer()
        f = torch.randn(2, 8, 16, 16)
        queries = []
        q(f, queries)
        self.assertEqual([t.shape[0] for t in queries], [2 * pn * pn for pn in PATCH_NUMS])
        candidates = torch.cat(queries)
        dead = torch.zeros(64, dtype=torch.bool)
        dead[[3, 10, 60]] = True
        before = q.embedding.weight.detach().clone()
        self.assertEqual(q.replace_codes(dead, candidates, noise=0.0), 3)
        after = q.embedding.weight.detach()
        self.assertTrue(torch.equal(after[~dead], before[~dead]))
        for i in (3, 10, 60):  # each re-seeded code is one of the candidate vectors
            self.assertLess((candidates - after[i]).norm(dim=1).min().item(), 1e-6)


if __name__ == "__main__":
    unittest.main()
