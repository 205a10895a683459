"""The generator as training sees it: its config from the tokenizer's geometry and the chosen
sizes, the initial weights, the fp32 residual stream under bf16 autocast, the EMA of the
weights (what gets saved and exported), the optimizer, and the model files written.
"""
import copy
import dataclasses
import math

import torch
import torch.nn as nn

from hart.config import HartConfig, get_config
from hart.diffusion import LayerNormNoAffine, ResBlock as DiffusionResBlock
from hart.model import HartModel
from hart.text_encoder import TextBlock
from hart.transformer import Block, RMSNorm
from hart.vae import tokenizer_configs
from lab.train_utils import save_checkpoint


def build_config(args, saved_tokenizer: dict) -> HartConfig:
    """The base config with the trained tokenizer's geometry and the chosen transformer size."""
    base = get_config(args.config)
    vae, quantizer = tokenizer_configs(saved_tokenizer["config"])
    diffusion = dataclasses.replace(base.diffusion, in_channels=quantizer.channels, width=args.diff_width,
                                    depth=args.diff_depth, cond_dim=args.width)
    text = dataclasses.replace(base.text_encoder, width=args.text_width, depth=args.text_depth,
                               heads=args.text_heads, word_skip=args.word_skip)
    return dataclasses.replace(base, image_size=vae.image_size, vae=vae, quantizer=quantizer, diffusion=diffusion,
                               text_encoder=text, context_dim=args.text_width, width=args.width,
                               depth=args.depth, heads=args.heads, attention_scale=args.attention_scale)


@torch.no_grad()
def init_weights(model: HartModel) -> None:
    """GPT-style init for the transformer and text encoder (the diffusion head keeps its own).

    Small normal weights, zero biases; the output projections of each residual branch are
    scaled by 1/√(2·depth) so the residual stream does not grow with depth, and the head's
    AdaLN starts at zero (a plain RMSNorm before the output head).
    """
    for part in (model.transformer, model.text_encoder):
        depth = len(part.blocks)
        for name, module in part.named_modules():
            if name.startswith("diffloss"):
                continue
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = 0.02
                if name.endswith("proj") and not name.endswith("qkv_proj") or name.endswith("down_proj"):
                    std = 0.02 / math.sqrt(2 * depth)
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
    nn.init.zeros_(model.transformer.head_nm.ada_lin[1].weight)
    nn.init.zeros_(model.transformer.head_nm.ada_lin[1].bias)


def keep_fp32_residual_stream(model: HartModel) -> None:
    """Under bf16 autocast, run every norm and every block's residual additions in fp32.

    Linear outputs come back in bf16; casting the inputs of blocks and norms to fp32 (hooks,
    so the shared model code stays unchanged) keeps the residual streams and the norms'
    statistics in fp32, while the matrix work still runs in bf16. (torch 1.13's CPU autocast
    does not do this for layer_norm itself: a bf16 input with fp32 weights fails.)
    """
    def to_fp32(module, inputs):
        return (inputs[0].float(),) + tuple(inputs[1:])

    fp32_kinds = (RMSNorm, Block, TextBlock, nn.LayerNorm, LayerNormNoAffine, DiffusionResBlock)
    for part in (model.transformer, model.text_encoder):
        for module in part.modules():
            if isinstance(module, fp32_kinds) and not getattr(module, "_fp32_inputs", False):
                module.register_forward_pre_hook(to_fp32)
                module._fp32_inputs = True


class EMA:
    """Exponential moving average of the trainable weights (HART exports the EMA weights)."""

    def __init__(self, modules, decay: float):
        self.decay = decay
        self.modules = modules
        self.shadow = [{k: v.detach().clone().float() for k, v in m.state_dict().items()} for m in modules]

    @torch.no_grad()
    def update(self, step: int) -> None:
        # Early on, average over the steps so far (the random init should not linger).
        decay = min(self.decay, (1 + step) / (10 + step))
        for module, shadow in zip(self.modules, self.shadow):
            for name, value in module.state_dict().items():
                if value.dtype.is_floating_point:
                    shadow[name].mul_(decay).add_(value.float(), alpha=1 - decay)
                else:
                    shadow[name].copy_(value)

    def state(self):
        return self.shadow

    def load(self, shadow) -> None:
        """Shadows from a checkpoint (saved on any device), onto the modules' device."""
        device = next(self.modules[0].parameters()).device
        self.shadow = [{k: v.to(device, copy=True) for k, v in s.items()} for s in shadow]


def ema_model(model: HartModel, ema: EMA) -> HartModel:
    """A copy of the model holding the EMA weights."""
    copied = copy.deepcopy(model)
    copied.transformer.load_state_dict(ema.shadow[0])
    copied.text_encoder.load_state_dict(ema.shadow[1])
    return copied.eval()


def model_checkpoint(model: HartModel, step: int, elapsed: float) -> dict:
    blob = model.checkpoint()
    blob.update(step=step, elapsed_s=elapsed)
    return blob


def save_model(path: str, model: HartModel, ema: EMA, step: int, elapsed: float) -> None:
    save_checkpoint(path, model_checkpoint(ema_model(model, ema), step, elapsed))


def make_optimizer(model: HartModel, args):
    """AdamW; no weight decay on vectors (norm weights, biases, level/position tables' biases)."""
    decay, no_decay = [], []
    for part in (model.transformer, model.text_encoder):
        for name, p in part.named_parameters():
            (decay if p.dim() >= 2 and "pos_embed" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))


def trainable_parameters(model: HartModel) -> int:
    return sum(p.numel() for part in (model.transformer, model.text_encoder) for p in part.parameters())
