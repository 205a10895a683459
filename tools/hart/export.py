"""Export a HART model as a `hart-web-package` (docs/model-package.md)."""
import math

import torch
import torch.nn as nn


@torch.no_grad()
def randomize_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every parameter a non-trivial random value (for random-weight packages and tests).

    Default initialisations leave many tensors at exactly 0 or 1 (biases, norm weights, AdaLN
    and final layers), which would hide wiring mistakes; here each matrix gets N(0, 1/fan_in),
    each norm weight 1 + N(0, 0.1²) and each bias or other vector N(0, 0.1²).
    """
    for name, param in module.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if param.dim() >= 2:
            fan_in = math.prod(param.shape[1:])
            param.copy_(noise / math.sqrt(fan_in))
        elif name.endswith("weight"):  # the only 1-D weights are norm scales
            param.copy_(1.0 + 0.1 * noise)
        else:
            param.copy_(0.1 * noise)
    return module

