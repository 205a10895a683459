"""HART's multi-scale residual vector quantizer (VAR's quantizer with the hybrid last scale).

A latent f [B, Cv, h, h] is split into K token maps r_0..r_{K-1} of sides patch_nums[k] plus
a continuous residual. Each scale quantizes what the earlier scales left unexplained; the
token map is brought back to h×h by bicubic up-sampling and refined by one of four shared
3×3 convs φ. The last scale is already h×h and, as in HART's inference, is added as is
(no φ). Submodule names match the published checkpoint (`embedding`,
`quant_resi.qresi_ls.{0..3}`), so `vae.quantize.*` weights load directly.
"""
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .resample import apply_separable, area_matrix, bicubic_matrix


@dataclass
class QuantizerConfig:
    vocab_size: int
    channels: int
    patch_nums: tuple
    quant_resi: float = 0.5
    phi_count: int = 4
    beta: float = 0.25


def phi_index(k: int, num_scales: int, phi_count: int = 4) -> int:
    """Which shared φ conv scale k uses: the nearest tick of linspace(1/12, 11/12, 4) to k/(K-1).

    Computed in float64 as the official code does: for some K a scale sits within 1e-9 of a
    boundary between two convs, and another rounding picks the other conv.
    """
    # The official tick spacing: 1/(3n) margins for the usual 4 convs, 1/(2n) for other counts.
    margin = 1 / 3 / phi_count if phi_count == 4 else 1 / 2 / phi_count
    ticks = np.linspace(margin, 1 - margin, phi_count)
    return int(np.argmin(np.abs(ticks - k / (num_scales - 1))))


class _PhiList(nn.Module):
    """Holds the φ convs under the checkpoint's key path `quant_resi.qresi_ls.{i}`."""

    def __init__(self, channels: int, count: int):
        super().__init__()
        self.qresi_ls = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(count))


def code_distances(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance [N, V] from each row of vectors [N, Cv] to every codeword."""
    return vectors.square().sum(1, keepdim=True) + codebook.square().sum(1) - 2.0 * vectors @ codebook.t()


class MultiScaleQuantizer(nn.Module):
    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.config = config
        self.patch_nums = tuple(config.patch_nums)
        self.num_scales = len(self.patch_nums)
        self.quant_resi_ratio = config.quant_resi
        self.embedding = nn.Embedding(config.vocab_size, config.channels)
        self.quant_resi = _PhiList(config.channels, config.phi_count)
        side = self.patch_nums[-1]
        # Non-persistent: they are derived from patch_nums, and the published state dict has no such keys.
        for k, pn in enumerate(self.patch_nums):
            self.register_buffer(f"up_{k}", bicubic_matrix(side, pn), persistent=False)
            self.register_buffer(f"down_{k}", area_matrix(pn, side), persistent=False)

    # ----- building blocks shared by inference, encoding and training -----

    def phi(self, h: torch.Tensor, k: int) -> torch.Tensor:
        conv = self.quant_resi.qresi_ls[phi_index(k, self.num_scales, self.config.phi_count)]
        return h * (1.0 - self.quant_resi_ratio) + conv(h) * self.quant_resi_ratio

    def upsample(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return apply_separable(getattr(self, f"up_{k}"), x)

    def downsample(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return apply_separable(getattr(self, f"down_{k}"), x)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Token map of latent vectors [B, Cv, pn, pn] from indices [B, pn, pn]."""
        return self.embedding(idx).permute(0, 3, 1, 2)

    def scale_contribution(self, tokens_map: torch.Tensor, k: int) -> torch.Tensor:
        """What scale k adds to f_hat: φ(Up(tokens)) before the last scale, the tokens themselves at it."""
        if k == self.num_scales - 1:
            return tokens_map
        return self.phi(self.upsample(tokens_map, k), k)

    # ----- inference API (what the sampler and the exporter call) -----

    def add_scale(self, f_hat: torch.Tensor, tokens_map: torch.Tensor, k: int) -> torch.Tensor:
        return f_hat + self.scale_contribution(tokens_map, k)

    def next_input(self, f_hat: torch.Tensor, k_next: int) -> torch.Tensor:
        """Teacher-forced input of scale k_next: Down_area(f_hat) flattened row-major to [B, pn², Cv]."""
        down = self.downsample(f_hat, k_next)
        return down.flatten(2).transpose(1, 2)

    def token_maps(self, indices: torch.Tensor) -> List[torch.Tensor]:
        """Flat token sequences [B, Σ pn²] (scale after scale, row-major) → maps [B, pn, pn]."""
        maps, start = [], 0
        for pn in self.patch_nums:
            maps.append(indices[:, start:start + pn * pn].reshape(-1, pn, pn))
            start += pn * pn
        return maps

    def indices_to_fhat(self, idx_list: List[torch.Tensor]) -> torch.Tensor:
        first = idx_list[0]
        side = self.patch_nums[-1]
        f_hat = torch.zeros(first.shape[0], self.config.channels, side, side, device=first.device)
        for k, idx in enumerate(idx_list):
            f_hat = self.add_scale(f_hat, self.lookup(idx), k)
        return f_hat

    # ----- encoding -----

    def _residual_quantize(self, f: torch.Tensor, queries: list = None, replace=None):
        """Residual multi-scale VQ of f; returns (indices, f_hat, per-scale f_hat list).

        The nearest-code search runs on detached values; f_hat keeps the gradient path to the
        codebook and the φ convs (through lookup, Up and φ), which the VQ loss trains.
        If `queries` is a list, the vectors that were matched against the codebook at every
        scale are appended to it (the trainer re-seeds dead codes from them).
        `replace(k, distances [N, V], nearest [N])`, if given, returns the tokens [N] that scale
        k adds to f_hat instead of the nearest codes; the later scales quantize what those leave
        of f, and the returned indices stay the nearest codes (lab/generator/self_correction.py).
        """
        f_rest = f.detach().clone()
        f_hat = torch.zeros_like(f_rest)
        codebook = self.embedding.weight.detach()
        idx_list, partial = [], []
        for k, pn in enumerate(self.patch_nums):
            rest_small = self.downsample(f_rest, k).permute(0, 2, 3, 1).reshape(-1, f.shape[1])
            if queries is not None:
                queries.append(rest_small)
            dist = code_distances(rest_small, codebook)
            nearest = dist.argmin(1)
            taken = nearest if replace is None else replace(k, dist, nearest)
            idx = nearest.view(f.shape[0], pn, pn)
            h = self.scale_contribution(self.lookup(taken.view(f.shape[0], pn, pn)), k)
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            idx_list.append(idx)
            partial.append(f_hat)
        return idx_list, f_hat, partial

    @torch.no_grad()
    def encode_indices(self, f: torch.Tensor, replace=None) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """HART's hybrid split: (token maps [B, pn, pn], discrete f_hat, residual = f - f_hat).
        `replace`: see _residual_quantize (f_hat and the residual follow the replaced tokens)."""
        f = f.float()
        idx_list, f_hat, _ = self._residual_quantize(f, replace=replace)
        return idx_list, f_hat, f - f_hat

    def forward(self, f: torch.Tensor, queries: list = None):
        """Training forward: (straight-through f_hat, VQ loss, token maps).

        VQ loss (VAR): mean over scales of ‖sg(f_hat_k) − f‖²·β (commitment, trains the
        encoder) + ‖f_hat_k − sg(f)‖² (trains codebook and φ). The returned f_hat carries the
        decoder's gradient straight through to f.
        """
        with torch.autocast("cpu", enabled=False):
            f = f.float()
            idx_list, f_hat, partial = self._residual_quantize(f, queries)
            f_detached = f.detach()
            vq_loss = f.new_zeros(())
            for fk in partial:
                vq_loss = vq_loss + self.config.beta * F.mse_loss(fk.detach(), f) + F.mse_loss(fk, f_detached)
            vq_loss = vq_loss / self.num_scales
            f_hat_st = f_hat.detach() - f_detached + f
        return f_hat_st, vq_loss, idx_list

    @torch.no_grad()
    def replace_codes(self, dead: torch.Tensor, candidates: torch.Tensor, noise: float = 0.01) -> int:
        """Re-seed the codewords flagged in `dead` [V] bool with random rows of candidates [N, Cv].

        Unused codewords get no gradient and stay unused forever; moving them onto vectors the
        quantizer actually sees gives them a chance to win. Returns how many were replaced.
        """
        n_dead = int(dead.sum())
        if n_dead == 0 or candidates.shape[0] == 0:
            return 0
        pick = torch.randint(0, candidates.shape[0], (n_dead,), device=candidates.device)
        fresh = candidates[pick].float()
        fresh = fresh + noise * fresh.std() * torch.randn_like(fresh)
        self.embedding.weight[dead] = fresh.to(self.embedding.weight.dtype)
        return n_dead
