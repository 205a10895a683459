"""HART's residual diffusion head: a small MLP denoiser (MAR's SimpleMLPAdaLN) and its iDDPM sampler.

At the last scale each token's continuous residual (latent minus its codebook vector) is
sampled by an 8-step ancestral DDPM conditioned on that token's transformer state z. The
network predicts ε and a learned-range variance value v (improved DDPM); training uses a
cosine schedule over 1000 steps, sampling the same schedule respaced to 8 kept steps.
Parameter names match the published `diffloss.net.*` keys.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class DiffusionConfig:
    in_channels: int
    width: int
    depth: int
    cond_dim: int
    steps: int = 8
    train_steps: int = 1000
    scale: float = 0.6


# ----------------------------------------------------------------------------------------
# Network


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoid features [cos, sin] of (original, un-respaced) timesteps t [M] -> [M, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.frequency_dim))


class ResBlock(nn.Module):
    """Pre-LN MLP block whose LayerNorm is modulated (shift, scale) and whose output is gated by y."""

    def __init__(self, width: int):
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x, y):
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.in_ln(x), shift, scale))


class LayerNormNoAffine(nn.Module):
    """LayerNorm without learned affine (eps 1e-6).

    torch 1.13 exports nn.LayerNorm(elementwise_affine=False) as a LayerNormalization node
    with an empty scale input, which the ONNX checker rejects; fixed unit scale and zero bias
    (non-persistent, so no state-dict keys) export cleanly and compute the same thing.
    """

    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.register_buffer("unit_scale", torch.ones(width), persistent=False)
        self.register_buffer("zero_shift", torch.zeros(width), persistent=False)

    def forward(self, x):
        return F.layer_norm(x, self.unit_scale.shape, self.unit_scale, self.zero_shift, self.eps)


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_channels: int):
        super().__init__()
        self.norm_final = LayerNormNoAffine(width)
        self.linear = nn.Linear(width, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x, y):
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SimpleMLPAdaLN(nn.Module):
    def __init__(self, config: DiffusionConfig):
        super().__init__()
        w = config.width
        self.in_channels = config.in_channels
        self.time_embed = TimestepEmbedder(w)
        self.cond_embed = nn.Linear(config.cond_dim, w)
        self.input_proj = nn.Linear(config.in_channels, w)
        self.res_blocks = nn.ModuleList(ResBlock(w) for _ in range(config.depth))
        self.final_layer = FinalLayer(w, 2 * config.in_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """DiT/MAR init: Xavier linears, small time MLP, zeroed modulations and output (starts as identity)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        for block in self.res_blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for m in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x [M, Cv], t [M] original timesteps, c [M, cond_dim] -> [M, 2Cv] = [ε, v]."""
        y = self.time_embed(t) + self.cond_embed(c)
        h = self.input_proj(x)
        for block in self.res_blocks:
            h = block(h, y)
        return self.final_layer(h, y)


# ----------------------------------------------------------------------------------------
# Schedule (float64, as iDDPM computes it)


def cosine_betas(num_steps: int, max_beta: float = 0.999) -> np.ndarray:
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
                     for i in range(num_steps)], dtype=np.float64)


def kept_timesteps(train_steps: int, steps: int) -> List[int]:
    """iDDPM space_timesteps(train_steps, str(steps)) for one section: evenly strided, rounded."""
    if steps == 1:
        return [0]
    stride = (train_steps - 1) / (steps - 1)
    return sorted({round(i * stride) for i in range(steps)})


def schedule_constants(betas: np.ndarray) -> Dict[str, np.ndarray]:
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "posterior_mean_coef1": betas * np.sqrt(prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
        # The variance at t = 0 is 0; iDDPM substitutes the next one so the log is finite.
        "posterior_log_variance_clipped": np.log(np.append(posterior_variance[1], posterior_variance[1:])),
        "log_betas": np.log(betas),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1.0),
    }


def _normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _discretized_gaussian_log_likelihood(x, means, log_scales):
    """log p(x) for data on a 256-level grid in [-1, 1] (iDDPM's decoder term at t = 0)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


# ----------------------------------------------------------------------------------------
# Loss and sampler


class DiffLoss(nn.Module):
    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        self.net = SimpleMLPAdaLN(config)
        self.train_constants = schedule_constants(cosine_betas(config.train_steps))

    def respaced_constants(self) -> Dict[str, np.ndarray]:
        """The sampler's constants over the kept timesteps, respaced index order (t = 0 first).

        Respacing keeps ᾱ at the kept timesteps and recomputes β_i = 1 − ᾱ_i / ᾱ_{i−1}.
        """
        timesteps = kept_timesteps(self.config.train_steps, self.config.steps)
        alphas_cumprod = self.train_constants["alphas_cumprod"][timesteps]
        betas = 1.0 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])
        consts = schedule_constants(betas)
        keys = ("betas", "alphas_cumprod", "posterior_mean_coef1", "posterior_mean_coef2",
                "posterior_log_variance_clipped", "log_betas", "sqrt_recip_alphas_cumprod",
                "sqrt_recipm1_alphas_cumprod")
        out = {k: consts[k] for k in keys}
        out["timesteps"] = np.array(timesteps, dtype=np.float64)
        return out

    def guided_eps(self, x, t, z_cond, z_uncond, guidance: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """CFG on ε: (1+g)·ε_cond − g·ε_uncond for one trajectory x; v from the conditional half."""
        m, cv = x.shape[0], self.config.in_channels
        out = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([z_cond, z_uncond]))
        eps_c, eps_u = out[:m, :cv], out[m:, :cv]
        return (1.0 + guidance) * eps_c - guidance * eps_u, out[:m, cv:]

    @torch.no_grad()
    def sample(self, z_cond, z_uncond, guidance: float, noises: List[torch.Tensor]) -> torch.Tensor:
        """Residual [M, Cv] (already × scale) by iDDPM ancestral sampling with injected noise.

        noises[0] is the start point x at the last kept step, noises[1..] the step noises for
        respaced indices steps-1 … 1 (index 0 adds no noise).
        """
        c = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in self.respaced_constants().items()}
        x = noises[0].float()
        steps = self.config.steps
        for n, i in enumerate(reversed(range(steps))):
            t = torch.full((x.shape[0],), float(c["timesteps"][i]), device=x.device)
            eps, v = self.guided_eps(x, t, z_cond, z_uncond, guidance)
            x0 = (c["sqrt_recip_alphas_cumprod"][i] * x - c["sqrt_recipm1_alphas_cumprod"][i] * eps).clamp(-1, 1)
            mean = c["posterior_mean_coef1"][i] * x0 + c["posterior_mean_coef2"][i] * x
            frac = (v + 1) / 2
            log_var = frac * c["log_betas"][i] + (1 - frac) * c["posterior_log_variance_clipped"][i]
            x = mean + torch.exp(0.5 * log_var) * noises[n + 1] if i > 0 else mean
        return x * self.config.scale

    def loss(self, target: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """iDDPM hybrid loss for learned-range variance: ε-MSE + variational bound (ε detached).

        target is the residual in latent units; it is divided by the scale (0.6) as HART does.
        """
        x_start = target.float() / self.config.scale
        k = self.train_constants
        m = x_start.shape[0]
        t = torch.randint(0, self.config.train_steps, (m,), device=x_start.device)

        def at(name):
            return torch.as_tensor(k[name], dtype=torch.float32, device=x_start.device)[t][:, None]

        noise = torch.randn_like(x_start)
        x_t = at("sqrt_alphas_cumprod") * x_start + at("sqrt_one_minus_alphas_cumprod") * noise
        out = self.net(x_t, t.float(), z)
        cv = self.config.in_channels
        eps, v = out[:, :cv], out[:, cv:]
        mse = (eps - noise).square().mean(1)

        # Variational bound: trains only v (ε is detached so it does not fight the MSE term).
        true_mean = at("posterior_mean_coef1") * x_start + at("posterior_mean_coef2") * x_t
        true_log_var = at("posterior_log_variance_clipped")
        x0_pred = at("sqrt_recip_alphas_cumprod") * x_t - at("sqrt_recipm1_alphas_cumprod") * eps.detach()
        model_mean = at("posterior_mean_coef1") * x0_pred + at("posterior_mean_coef2") * x_t
        frac = (v + 1) / 2
        model_log_var = frac * at("log_betas") + (1 - frac) * true_log_var
        kl = _normal_kl(true_mean, true_log_var, model_mean, model_log_var).mean(1) / math.log(2.0)
        nll = -_discretized_gaussian_log_likelihood(x_start, model_mean, 0.5 * model_log_var).mean(1) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl)
        return (mse + vb).mean()
