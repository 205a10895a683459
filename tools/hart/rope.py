"""HART's rotary position embeddings: 1D for the text prefix, fractional "2D" for image scales.

Both produce cos/sin tables [N, L, hd] that the attention applies as
q·cos + rotate_half(q)·sin with rotate_half(q) = [−q[hd/2:], q[:hd/2]] (HF-Llama pairing).

The 2D variant is HART's own and is NOT a true 2D rotation: the table is laid out as
[R·f, R·f, C·f, C·f] (four blocks of hd/4), so dim j (a row angle) is paired with dim j+hd/2
(a column angle). Reproduce it as is.

Every number is rounded to float32 at the same points as docs/model-package.md §4 step 3
prescribes, so that the TypeScript engine can compute identical tables: frequencies in float64
rounded to float32, positions and angles in float32 arithmetic, cos/sin of the float32 angle
evaluated in float64 and rounded to float32.
"""
from typing import Sequence, Tuple

import numpy as np
import torch

Tables = Tuple[torch.Tensor, torch.Tensor]


def text_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """θ^(−2i/hd) for i < hd/2."""
    i = np.arange(head_dim // 2, dtype=np.float64)
    return (theta ** (-2.0 * i / head_dim)).astype(np.float32)


def image_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """θ^(−4i/hd) for i < hd/4."""
    i = np.arange(head_dim // 4, dtype=np.float64)
    return (theta ** (-4.0 * i / head_dim)).astype(np.float32)


def _tables(angles: np.ndarray) -> Tables:
    angles = angles.astype(np.float64)
    cos = np.cos(angles).astype(np.float32)
    sin = np.sin(angles).astype(np.float32)
    return torch.from_numpy(cos), torch.from_numpy(sin)


def text_positions(n_valid: Sequence[int], length: int) -> np.ndarray:
    """Position ids of a right-padded text window: cumsum(mask) − 1, i.e. min(j, n − 1)."""
    j = np.arange(length)
    return np.stack([np.minimum(j, n - 1) for n in n_valid]).astype(np.float32)


def text_rope(positions: np.ndarray, head_dim: int, theta: float) -> Tables:
    """1D RoPE tables [N, L, hd] for per-row positions [N, L]."""
    freqs = text_inv_freq(head_dim, theta)
    half = positions.astype(np.float32)[:, :, None] * freqs[None, None, :]
    return _tables(np.concatenate([half, half], axis=-1))


def image_rope(pn: int, side: int, offsets: Sequence[float], head_dim: int, theta: float) -> Tables:
    """2D RoPE tables [N, pn·pn, hd] for one scale; offsets [N] is each row's last text position."""
    freqs = image_inv_freq(head_dim, theta)
    r = np.repeat(np.arange(pn), pn).astype(np.float32)     # row of token index = r·pn + c
    c = np.tile(np.arange(pn), pn).astype(np.float32)
    # (i / pn) · side, in this order and in float32: HART's own rounding (docs/hart.md §3).
    r = r / np.float32(pn) * np.float32(side)
    c = c / np.float32(pn) * np.float32(side)
    rows = []
    for o in offsets:
        o = np.float32(o)
        ra = (r + o)[:, None] * freqs[None, :]
        ca = (c + o)[:, None] * freqs[None, :]
        rows.append(np.concatenate([ra, ra, ca, ca], axis=-1))
    return _tables(np.stack(rows))


def cfg_text_rope(n_valid: Sequence[int], length: int, head_dim: int, theta: float) -> Tables:
    """Text tables for the CFG batch: conditional rows use their positions, unconditional rows 0."""
    cond = text_positions(n_valid, length)
    return text_rope(np.concatenate([cond, np.zeros_like(cond)]), head_dim, theta)


def cfg_image_rope(pn: int, side: int, n_valid: Sequence[int], head_dim: int, theta: float) -> Tables:
    """Scale tables for the CFG batch: offset n − 1 on conditional rows, 0 on unconditional rows."""
    offsets = [n - 1 for n in n_valid] + [0] * len(n_valid)
    return image_rope(pn, side, offsets, head_dim, theta)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [N, H, L, hd] rotated by tables [N, L, hd] (shared by all heads)."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def apply_rope_bsnh(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """apply_rope for x [N, L, H, hd], heads after positions (the fused-attention layout)."""
    return x * cos[:, :, None] + rotate_half(x) * sin[:, :, None]
