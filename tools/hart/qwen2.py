"""Our own Qwen2 decoder, used by HART as a text encoder (docs/hart.md §2).

HART runs the Qwen2 base model once over `[system prompt ‖ prompt padded to 300]` and keeps
the last hidden states after the final RMSNorm. This module reproduces exactly that part of
Hugging Face's `Qwen2Model` (no generation, no KV cache, no LM head), with the same parameter
names so that a published `model.safetensors` loads by name:

    embed_tokens.weight, layers.{i}.self_attn.{q,k,v,o}_proj.*, layers.{i}.mlp.{gate,up,down}_proj.weight,
    layers.{i}.{input,post_attention}_layernorm.weight, norm.weight

(the files prefix them with `model.`; `tools/convert/checkpoint.py` strips it).
Attention is written out by hand: torch 1.13 has no scaled_dot_product_attention, and the
ONNX exporter needs plain ops anyway.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

import torch
from torch import nn
import torch.nn.functional as F


@dataclass
class Qwen2Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int = 32768

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf(cls, config: Mapping) -> "Qwen2Config":
        """Build from a Hugging Face `config.json` dict, refusing what this module cannot run."""
        model_type = config.get("model_type")
        if model_type != "qwen2":
            raise ValueError(f"text encoder config.json: model_type is {model_type!r}, expected 'qwen2'")
        required = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "rms_norm_eps", "rope_theta"]
        missing = [name for name in required if name not in config]
        if missing:
            raise ValueError(f"text encoder config.json lacks {', '.join(missing)}")
        act = config.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"text encoder config.json: hidden_act {act!r} is not supported (only 'silu')")
        if config.get("use_sliding_window"):
            # HART's sequences (prefix + 300) are far shorter than Qwen2's windows, but a model that
            # asks for one is not the one HART was trained with: refuse rather than guess.
            raise ValueError("text encoder config.json: use_sliding_window = true is not supported")
        if config.get("rope_scaling"):
            raise ValueError(f"text encoder config.json: rope_scaling {config['rope_scaling']!r} is not supported")
        heads = int(config["num_attention_heads"])
        # HF's default when the field is absent is plain multi-head attention.
        kv_heads = int(config.get("num_key_value_heads") or heads)
        hidden = int(config["hidden_size"])
        if hidden % heads or heads % kv_heads:
            raise ValueError(f"text encoder config.json: hidden_size {hidden}, {heads} heads and "
                             f"{kv_heads} key/value heads do not divide evenly")
        return cls(
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            rms_norm_eps=float(config["rms_norm_eps"]),
            rope_theta=float(config["rope_theta"]),
            max_position_embeddings=int(config.get("max_position_embeddings", 32768)),
        )

    def to_hf(self) -> dict:
        """The fields as a Hugging Face config.json would hold them (for fake checkpoints)."""
        return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu",
                "tie_word_embeddings": True, "use_sliding_window": False, "rope_scaling": None,
                **asdict(self)}


class Qwen2RMSNorm(nn.Module):
    """HF's RMSNorm: normalise in float32, cast back, then scale."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float):
    """cos/sin [S, hd] of HF's rotary embedding ([freqs, freqs] layout) for integer positions [S]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Qwen2Attention(nn.Module):
    """Grouped-query attention with q/k/v biases; causal + key-padding mask from the caller."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, mask_bias):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # Each key/value head serves `heads // kv_heads` consecutive query heads (HF's repeat_kv).
        groups = self.heads // self.kv_heads
        if groups > 1:
            k = k[:, :, None].expand(b, self.kv_heads, groups, s, self.head_dim).reshape(b, self.heads, s, self.head_dim)
            v = v[:, :, None].expand(b, self.kv_heads, groups, s, self.head_dim).reshape(b, self.heads, s, self.head_dim)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask_bias
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
        return self.o_proj(out)


class Qwen2MLP(nn.Module):
    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen2DecoderLayer(nn.Module):
    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.self_attn = Qwen2Attention(config)
        self.mlp = Qwen2MLP(config)
        self.input_layernorm = Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, mask_bias):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask_bias)
        return x + self.mlp(self.post_attention_layernorm(x))


def attention_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """Additive float32 mask [B, 1, S, S]: query i sees key j when j <= i and key j is a real token.

    A large finite negative instead of -inf keeps a fully masked row finite; with HART's
    inputs no row is fully masked (the system prompt is never padding).
    """
    s = attention_mask.shape[1]
    pos = torch.arange(s, device=attention_mask.device)
    causal = pos[None, :] <= pos[:, None]
    allowed = causal[None, None, :, :] & (attention_mask[:, None, None, :] != 0)
    return torch.where(allowed, torch.zeros((), dtype=torch.float32), torch.full((), -1e9, dtype=torch.float32))


class Qwen2Model(nn.Module):
    """Qwen2 base model returning `last_hidden_state` (after the final norm), [B, S, hidden]."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([Qwen2DecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = Qwen2RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embed_tokens(input_ids.long())
        # HF's default position ids: arange over the whole (prefix + prompt) sequence, padding included.
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        mask_bias = attention_bias(attention_mask)
        for layer in self.layers:
            x = layer(x, cos, sin, mask_bias)
        return self.norm(x)


class Qwen2TextEncoder(nn.Module):
    """The package's `textEncoder` graph: int32 `input_ids`, `attention_mask` [B, S] -> `hidden`."""

    def __init__(self, model: Qwen2Model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids.long(), attention_mask)
