"""Resampling between scales as plain matrices.

HART moves latents between scales with PyTorch's bicubic up-sampling and area down-sampling.
Both are separable linear maps, so each is one small matrix per (out, in) size pair:
Up(X) = U X Uᵀ and Down(X) = A X Aᵀ. Matrices export to ONNX as MatMul and are exactly what
the engine stores in the package tables, so Python and TypeScript share one definition.
"""
import math

import torch

# PyTorch's cubic-convolution constant (Keys' A); not the A = -0.5 of many image libraries.
CUBIC_A = -0.75


def _cubic_near(x: float) -> float:
    """Kernel value for |x| <= 1."""
    a = CUBIC_A
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0


def _cubic_far(x: float) -> float:
    """Kernel value for 1 < |x| < 2."""
    a = CUBIC_A
    return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a


def bicubic_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """[out, in] matrix equal to F.interpolate(mode='bicubic', align_corners=False) along one axis.

    Weights are computed in float64 so the float32 result does not depend on summation order.
    Taps that fall outside the input are clamped to the edge (that is how PyTorch pads).
    """
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    scale = in_size / out_size
    for o in range(out_size):
        src = (o + 0.5) * scale - 0.5  # no clamp at 0: PyTorch keeps negative sources for cubic
        base = math.floor(src)
        t = src - base
        weights = (_cubic_far(t + 1.0), _cubic_near(t), _cubic_near(1.0 - t), _cubic_far(2.0 - t))
        for tap, w in zip(range(base - 1, base + 3), weights):
            m[o, min(max(tap, 0), in_size - 1)] += w
    return m.float()


def area_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """[out, in] matrix equal to F.interpolate(mode='area') (adaptive_avg_pool2d) along one axis.

    Output i averages the input window [floor(i·in/out), ceil((i+1)·in/out)).
    """
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        start = (o * in_size) // out_size
        end = -((-(o + 1) * in_size) // out_size)
        m[o, start:end] = 1.0 / (end - start)
    return m.float()


def apply_separable(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """M X Mᵀ over the last two axes of x ([..., in, in] -> [..., out, out])."""
    return torch.matmul(torch.matmul(matrix, x), matrix.transpose(0, 1))
