"""A whole HART model: config, transformer (+ diffusion head), hybrid tokenizer, text encoder.

Checkpoint format (what training writes and `tools/py export --checkpoint` reads), a
dict saved with torch.save:
    {"config": HartConfig.to_dict(),
     "transformer": HartTransformer state dict (diffusion head under "diffloss.net.*"),
     "tokenizer": HybridTokenizer state dict,
     "text_encoder": TextEncoder state dict (absent or None for kind "qwen2")}
"""
import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn as nn

from .config import HartConfig
from .saved import load_saved
from .text_encoder import TextEncoder
from .transformer import HartTransformer
from .vae import HybridTokenizer


@torch.no_grad()
def randomize_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every parameter a non-trivial random value (random-weight packages and tests).

    Default initialisations leave many tensors at exactly 0 or 1 (biases, norm weights, AdaLN
    and final layers), which would hide wiring mistakes; here each matrix gets N(0, 1/fan_in),
    each norm weight 1 + N(0, 0.1²) and each bias or other vector N(0, 0.1²).
    """
    for name, param in module.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if param.dim() >= 2:
            param.copy_(noise / math.sqrt(math.prod(param.shape[1:])))
        elif name.endswith("weight"):  # the only 1-D weights are norm scales
            param.copy_(1.0 + 0.1 * noise)
        else:
            param.copy_(0.1 * noise)
    return module


@dataclass
class HartModel:
    config: HartConfig
    transformer: HartTransformer
    tokenizer: HybridTokenizer
    text_encoder: Optional[TextEncoder]

    @classmethod
    def build(cls, config: HartConfig) -> "HartModel":
        text_encoder = TextEncoder(config.text_encoder) if config.text_encoder.kind == "small" else None
        return cls(config, HartTransformer(config), HybridTokenizer(config.vae, config.quantizer), text_encoder)

    @classmethod
    def random(cls, config: HartConfig, seed: int) -> "HartModel":
        model = cls.build(config)
        generator = torch.Generator().manual_seed(seed)
        for part in model.parts():
            randomize_(part, generator)
        return model.eval()

    @classmethod
    def from_checkpoint(cls, checkpoint: Union[str, dict]) -> "HartModel":
        if not isinstance(checkpoint, dict):
            checkpoint = load_saved(checkpoint)
        missing = [k for k in ("config", "transformer", "tokenizer") if k not in checkpoint]
        if missing:
            raise ValueError(f"checkpoint lacks {missing}; expected keys config, transformer, tokenizer, text_encoder")
        model = cls.build(HartConfig.from_dict(checkpoint["config"]))
        model.transformer.load_state_dict(checkpoint["transformer"])
        model.tokenizer.load_state_dict(checkpoint["tokenizer"])
        if model.text_encoder is not None:
            if checkpoint.get("text_encoder") is None:
                raise ValueError("checkpoint has no text_encoder weights but the config needs a small text encoder")
            model.text_encoder.load_state_dict(checkpoint["text_encoder"])
        return model.eval()

    def checkpoint(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "transformer": self.transformer.state_dict(),
            "tokenizer": self.tokenizer.state_dict(),
            "text_encoder": None if self.text_encoder is None else self.text_encoder.state_dict(),
        }

    def parts(self):
        return [p for p in (self.transformer, self.tokenizer, self.text_encoder) if p is not None]

    def eval(self) -> "HartModel":
        for part in self.parts():
            part.eval()
        return self

    def to(self, device) -> "HartModel":
        for part in self.parts():
            part.to(device)
        return self
