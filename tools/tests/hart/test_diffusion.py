import unittest

import numpy as np
import torch

from hart.diffusion import DiffLoss, DiffusionConfig, SimpleMLPAdaLN, timestep_embedding

# docs/hart.md §10.3, respaced index order 0..7 (original t = 0, 143, ..., 999).
TABLE = {
    "betas": [4.12842e-05, 0.0548782, 0.1487457, 0.2495457, 0.3660719, 0.5175658, 0.7354388, 0.99999995],
    "alphas_cumprod": [0.99995872, 0.94508278, 0.80450574, 0.60374480, 0.38273078, 0.18464242, 0.04884921, 2.4288e-09],
    "posterior_mean_coef1": [1.0, 0.99926887, 0.73968269, 0.56485851, 0.46080640, 0.39270294, 0.33224843, 0.22101857],
    "posterior_mean_coef2": [0.0, 0.00073084, 0.25918162, 0.42738685, 0.51111703, 0.52583024, 0.44092202, 0.00021209],
    "posterior_log_variance_clipped": [-10.09574, -10.09574, -3.17522, -2.09464, -1.44817, -0.93694, -0.46133, -0.05008],
    "log_betas": [-10.09503, -2.90264, -1.90552, -1.38811, -1.00493, -0.65862, -0.30729, -4.97e-08],
    "sqrt_recip_alphas_cumprod": [1.0000206, 1.0286440, 1.1148987, 1.2869845, 1.6164166, 2.3272029, 4.5245065, 20291.17],
    "sqrt_recipm1_alphas_cumprod": [0.0064254, 0.2410568, 0.4929495, 0.8101413, 1.2699617, 2.1013980, 4.4126136, 20291.17],
}


def last_digit_unit(value: float) -> float:
    """10^-(digits printed after the point) for a table entry, e.g. -0.05008 -> 1e-5, 4.97e-08 -> 1e-10."""
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** (int(exponent or 0) - decimals)


def small_loss(seed=0, width=32, depth=2, cv=4, cond=6):
    torch.manual_seed(seed)
    return DiffLoss(DiffusionConfig(in_channels=cv, width=width, depth=depth, cond_dim=cond))


def randomize(module, seed=1):
    """The published init zeroes the output; give every weight a value so the tests see the whole path."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


class Schedule(unittest.TestCase):
    def test_respaced_constants_match_table(self):
        consts = small_loss().respaced_constants()
        self.assertEqual(list(consts["timesteps"]), [0, 143, 285, 428, 571, 714, 856, 999])
        for name, expected in TABLE.items():
            got = consts[name]
            for i, e in enumerate(expected):
                # rel 1e-5, or half a unit of the last digit the table prints, whichever is looser
                tol = max(abs(e) * 1e-5, 0.5 * last_digit_unit(e))
                self.assertLessEqual(abs(got[i] - e), tol, f"{name}[{i}] = {got[i]} vs {e}")


class Network(unittest.TestCase):
    def test_published_parameter_count_and_keys(self):
        net = SimpleMLPAdaLN(DiffusionConfig(in_channels=32, width=1024, depth=6, cond_dim=1536))
        self.assertEqual(sum(p.numel() for p in net.parameters()), 36_585_536)
        keys = set(net.state_dict().keys())
        for key in ("time_embed.mlp.0.weight", "time_embed.mlp.2.bias", "cond_embed.weight", "input_proj.bias",
                    "res_blocks.5.in_ln.weight", "res_blocks.0.mlp.0.weight", "res_blocks.0.mlp.2.bias",
                    "res_blocks.3.adaLN_modulation.1.weight", "final_layer.linear.weight",
                    "final_layer.adaLN_modulation.1.bias"):
            self.assertIn(key, keys)
        self.assertNotIn("final_layer.norm_final.weight", keys)  # the final LayerNorm has no affine

    def test_timestep_embedding_is_cos_then_sin(self):
        e = timestep_embedding(torch.tensor([0.0, 999.0]))
        self.assertTrue(torch.allclose(e[0, :128], torch.ones(128)))
        self.assertTrue(torch.allclose(e[0, 128:], torch.zeros(128)))
        self.assertAlmostEqual(e[1, 0].item(), float(np.cos(999.0)), places=4)
        self.assertAlmostEqual(e[1, 128].item(), float(np.sin(999.0)), places=4)

    def test_init_predicts_zero(self):
        d = small_loss()
        out = d.net(torch.randn(5, 4), torch.full((5,), 500.0), torch.randn(5, 6))
        self.assertEqual(tuple(out.shape), (5, 8))
        self.assertEqual(out.abs().max().item(), 0.0)


class Sampler(unittest.TestCase):
    def test_guided_eps(self):
        d = small_loss()
        randomize(d.net)
        x, zc, zu = torch.randn(3, 4), torch.randn(3, 6), torch.randn(3, 6)
        t = torch.full((3,), 428.0)
        out_c, out_u = d.net(x, t, zc), d.net(x, t, zu)
        eps, v = d.guided_eps(x, t, zc, zu, 2.5)
        self.assertLess((eps - (3.5 * out_c[:, :4] - 2.5 * out_u[:, :4])).abs().max().item(), 1e-5)
        # guided_eps runs the conditional and unconditional rows as one batch of 6: the same
        # float32 rounding bound as eps above, since a batch of 3 may take another BLAS kernel.
        self.assertLess((v - out_c[:, 4:]).abs().max().item(), 1e-5)

    def test_sample_matches_step_equations_with_table_constants(self):
        d = small_loss()
        randomize(d.net)
        m, g = 6, 1.7
        gen = torch.Generator().manual_seed(3)
        zc, zu = torch.randn(m, 6, generator=gen), torch.randn(m, 6, generator=gen)
        noises = [torch.randn(m, 4, generator=gen) for _ in range(8)]
        got = d.sample(zc, zu, g, noises)

        # Independent loop over the published constants (docs/hart.md §10.3 / docs/model-package.md §4.8).
        x = noises[0].clone()
        for n, i in enumerate(range(7, -1, -1)):
            t = torch.full((m,), float(round(i * 999 / 7)))
            oc, ou = d.net(x, t, zc), d.net(x, t, zu)
            eps = (1 + g) * oc[:, :4] - g * ou[:, :4]
            v = oc[:, 4:]
            x0 = (TABLE["sqrt_recip_alphas_cumprod"][i] * x - TABLE["sqrt_recipm1_alphas_cumprod"][i] * eps).clamp(-1, 1)
            mu = TABLE["posterior_mean_coef1"][i] * x0 + TABLE["posterior_mean_coef2"][i] * x
            frac = (v + 1) / 2
            logvar = frac * TABLE["log_betas"][i] + (1 - frac) * TABLE["posterior_log_variance_clipped"][i]
            x = mu + (torch.exp(0.5 * logvar) * noises[n + 1] if i > 0 else 0)
        expected = 0.6 * x
        self.assertLess((got - expected).abs().max().item(), 2e-3)
        # the last step has c1 = 1, c2 = 0: the result is the clipped x0, so it lies within ±0.6
        self.assertLessEqual(got.abs().max().item(), 0.6 + 1e-6)

    def test_sample_is_deterministic_given_noise(self):
        d = small_loss()
        randomize(d.net)
        zc, zu = torch.randn(4, 6), torch.randn(4, 6)
        noises = [torch.randn(4, 4) for _ in range(8)]
        a = d.sample(zc, zu, 3.0, noises)
        b = d.sample(zc, zu, 3.0, [n.clone() for n in noises])
        self.assertTrue(torch.equal(a, b))
        noises[3] = noises[3] + 1.0
        self.assertFalse(torch.equal(a, d.sample(zc, zu, 3.0, noises)))


class Training(unittest.TestCase):
    def test_loss_trains_the_network(self):
        # The residual is a fixed function of the condition: the loss must fall when the net fits it.
        d = small_loss(width=64, depth=2)
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(256, 6, generator=gen)
        target = 0.4 * torch.tanh(z[:, :4])
        opt = torch.optim.Adam(d.net.parameters(), lr=2e-3)
        torch.manual_seed(1)

        def mean_loss(n=8):
            with torch.no_grad():
                return sum(d.loss(target, z).item() for _ in range(n)) / n

        before = mean_loss()
        for _ in range(300):
            loss = d.loss(target, z)
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = mean_loss()
        self.assertTrue(np.isfinite(before) and np.isfinite(after))
        self.assertLess(after, 0.7 * before)


if __name__ == "__main__":
    unittest.main()
