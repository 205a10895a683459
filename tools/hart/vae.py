"""HART's hybrid tokenizer: VAR's VQ-VAE encoder/decoder around the multi-scale quantizer.

Layout and parameter names follow VAR's `basic_vae.py` (taming / latent-diffusion lineage), so
the published `tokenizer/` weights (prefix `vae.`) load without renaming. The continuous
latent is f = quant_conv(encoder(x)); an image is decoder(post_quant_conv(f_hat)).
"""
import random
from dataclasses import dataclass
from typing import Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .quantizer import MultiScaleQuantizer, QuantizerConfig
from .saved import build_dataclass, load_saved


@dataclass
class VaeConfig:
    image_size: int
    ch: int
    ch_mult: tuple
    num_res_blocks: int
    z_channels: int
    attn_resolution_lowest: bool = True
    dropout: float = 0.0
    # Groups of every GroupNorm. HART's tokenizer (VAR's `Normalize`) uses 32 at every width;
    # the converter sets 32. 0 is the rule our small tokenizers were trained with
    # (`legacy_num_groups`), and what configs saved before this field existed mean.
    norm_groups: int = 0

    def groups(self, channels: int) -> int:
        """The GroupNorm group count of a layer `channels` wide."""
        if self.norm_groups == 0:
            return legacy_num_groups(channels)
        if channels % self.norm_groups:
            raise ValueError(f"norm_groups {self.norm_groups} does not divide a {channels}-channel layer")
        return self.norm_groups


def legacy_num_groups(channels: int) -> int:
    """Our small tokenizers' rule: 32 groups from C = 128 on; narrower layers keep at least 4
    channels per group (HART itself uses 32 groups at every width).

    With one channel per group GroupNorm becomes InstanceNorm and drops each channel's mean
    over the image, which at full resolution is the flat background colour the decoder must
    reproduce; 4 channels per group is what VAR's narrowest published layer (C = 128) has.
    """
    for g in range(max(1, min(32, channels // 4)), 0, -1):
        if channels % g == 0:
            return g
    return 1


class GroupNorm(nn.GroupNorm):
    """GroupNorm (eps 1e-6) whose statistics are always computed in float32.

    torch 1.13's CPU GroupNorm fails under bf16 autocast, so autocast is switched off here.
    For ONNX export it is written as reshape + mean/variance: plain ops that every
    onnxruntime execution provider runs (GroupNormalization-18 is not in opset 17, and the
    InstanceNormalization route depends on the EP).
    """

    def __init__(self, channels: int, groups: int = 0):
        super().__init__(groups or legacy_num_groups(channels), channels, eps=1e-6, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The statistics are computed in float32; the result goes back to the input's dtype so
        # a bf16 stream stays bf16 (fewer casts, half the memory traffic for the SiLU after it).
        with torch.autocast("cpu", enabled=False):
            xf = x.float()
            if torch.onnx.is_in_onnx_export():
                return self._decomposed(xf).to(x.dtype)
            return F.group_norm(xf, self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)

    def _decomposed(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b, self.num_groups, -1)
        mean = g.mean(-1, keepdim=True)
        var = (g - mean).square().mean(-1, keepdim=True)
        g = (g - mean) / torch.sqrt(var + self.eps)
        return g.reshape(b, c, h, w) * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float, config: VaeConfig):
        super().__init__()
        self.norm1 = GroupNorm(in_channels, config.groups(in_channels))
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = GroupNorm(out_channels, config.groups(out_channels))
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # Only channel-changing blocks own a 1×1 shortcut (key `nin_shortcut`).
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, with one 1×1 conv producing q, k, v."""

    def __init__(self, channels: int, config: VaeConfig):
        super().__init__()
        self.norm = GroupNorm(channels, config.groups(channels))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.scale = channels ** -0.5

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        attn = torch.softmax(torch.matmul(q.transpose(1, 2), k) * self.scale, dim=-1)  # [b, hw_q, hw_k]
        out = torch.matmul(v, attn.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 conv after zero-padding right and bottom by one (VAR/taming; not symmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest ×2 then a 3×3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        b, c, h, w = x.shape
        # Nearest ×2 written as expand + reshape: exports to plain ops (no Resize node).
        x = x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)
        return self.conv(x)


def _mid(channels: int, config: VaeConfig) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, config.dropout, config)
    mid.attn_1 = AttnBlock(channels, config)
    mid.block_2 = ResnetBlock(channels, channels, config.dropout, config)
    return mid


class Encoder(nn.Module):
    def __init__(self, config: VaeConfig, in_channels: int = 3):
        super().__init__()
        ch, mult, levels = config.ch, tuple(config.ch_mult), len(config.ch_mult)
        self.num_res_blocks = config.num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for i in range(levels):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * mult[i]
            lowest = i == levels - 1
            for _ in range(config.num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out, config.dropout, config))
                block_in = block_out
                if lowest and config.attn_resolution_lowest:
                    level.attn.append(AttnBlock(block_in, config))
            if not lowest:
                level.downsample = Downsample(block_in)
            self.down.append(level)
        self.mid = _mid(block_in, config)
        self.norm_out = GroupNorm(block_in, config.groups(block_in))
        self.conv_out = nn.Conv2d(block_in, config.z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, config: VaeConfig, out_channels: int = 3):
        super().__init__()
        ch, mult, levels = config.ch, tuple(config.ch_mult), len(config.ch_mult)
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, block_in, 3, padding=1)
        self.mid = _mid(block_in, config)
        # `up.{i}` is indexed by level (0 = full resolution) although forward runs from the lowest level up.
        ups = []
        for i in reversed(range(levels)):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * mult[i]
            for _ in range(config.num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out, config.dropout, config))
                block_in = block_out
                if i == levels - 1 and config.attn_resolution_lowest:
                    level.attn.append(AttnBlock(block_in, config))
            if i != 0:
                level.upsample = Upsample(block_in)
            ups.insert(0, level)
        self.up = nn.ModuleList(ups)
        self.norm_out = GroupNorm(block_in, config.groups(block_in))
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class HybridTokenizer(nn.Module):
    def __init__(self, vae: VaeConfig, quantizer: QuantizerConfig):
        super().__init__()
        self.vae_config = vae
        self.quantizer_config = quantizer
        cv = quantizer.channels
        assert vae.z_channels == cv, "the latent width is shared by encoder, quantizer and decoder"
        assert vae.image_size // 2 ** (len(vae.ch_mult) - 1) == quantizer.patch_nums[-1], \
            "the last scale must cover the whole latent"
        self.encoder = Encoder(vae)
        self.quant_conv = nn.Conv2d(cv, cv, 3, padding=1)
        self.quantize = MultiScaleQuantizer(quantizer)
        self.post_quant_conv = nn.Conv2d(cv, cv, 3, padding=1)
        self.decoder = Decoder(vae)

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous latent f [B, Cv, h, h] of an image in [-1, 1]."""
        return self.quant_conv(self.encoder(x))

    def decode(self, f_hat: torch.Tensor) -> torch.Tensor:
        return self.decode_raw(f_hat).clamp(-1, 1)

    def decode_unit(self, f_hat: torch.Tensor) -> torch.Tensor:
        return self.decode(f_hat) * 0.5 + 0.5

    def decode_raw(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Unclamped decoder output (the training loss uses it so saturated pixels keep a gradient)."""
        return self.decoder(self.post_quant_conv(f_hat))

    def forward(self, x: torch.Tensor, skip_continuous_prob: float = 1.0):
        """Training forward: (reconstruction in [-1, 1] unclamped, VQ loss, token maps, used_continuous).

        HART's alternating hybrid training: with probability skip_continuous_prob the decoder
        sees only the discrete f_hat; otherwise it sees the continuous latent f (discrete
        tokens plus the residual). skip_continuous_prob = 1 is plain VQ training (stage 1).
        """
        f = self.encode_continuous(x)
        f_hat, vq_loss, idx_list = self.quantize(f)
        use_continuous = random.random() >= skip_continuous_prob
        if use_continuous:
            # f_hat + residual == f; keep f's graph so a trainable encoder would still get the gradient.
            f_hat = f.float()
        return self.decode_raw(f_hat), vq_loss, idx_list, use_continuous


def tokenizer_blob(blob: dict) -> dict:
    """{state_dict, config: {vae, quantizer}}: a tokenizer file (train_tokenizer.py) as it is, or
    the tokenizer inside a model file or training checkpoint (e.g. checkpoints/hart-shapes-128.pt)."""
    if "state_dict" in blob:
        return blob
    config = blob["config"]
    return {"state_dict": blob["tokenizer"], "config": {"vae": config["vae"], "quantizer": config["quantizer"]}}


def tokenizer_configs(config: dict) -> Tuple[VaeConfig, QuantizerConfig]:
    """The configs of a saved tokenizer ({vae, quantizer} dicts, tuples saved as lists)."""
    return build_dataclass(VaeConfig, config["vae"]), build_dataclass(QuantizerConfig, config["quantizer"])


def load_tokenizer(source: Union[str, dict]) -> HybridTokenizer:
    """The trained tokenizer of one of our files (a path or its loaded dict): a tokenizer file
    or the tokenizer inside a model file or checkpoint."""
    blob = tokenizer_blob(load_saved(source) if isinstance(source, str) else source)
    model = HybridTokenizer(*tokenizer_configs(blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval()
