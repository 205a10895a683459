"""The small text encoder that stands in for Qwen2 in small models.

Word embedding + learned positions, a few bidirectional pre-norm transformer blocks with a
key-padding mask, and a final RMSNorm; output [B, S, D] like Qwen2's last hidden state. With
`word_skip` the RMS-normalised input embedding is added to that output: the blocks add context
to every word but can no longer wash a word out.
Padding queries still produce states (HART uses every one of the T slots), only padding keys
are masked.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TextEncoderConfig
from .transformer import FeedForward, RMSNorm

# Large but finite: a fully masked row (empty prompt) stays a uniform softmax, not NaN, and the
# value still fits in float16.
MASKED = -30000.0


class TextAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim)) + key_bias
        out = torch.matmul(scores.softmax(dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(n, length, width))


class TextBlock(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        hidden = int(config.width * 8 / 3 + 255) // 256 * 256
        self.norm1 = RMSNorm(config.width, config.norm_eps)
        self.attn = TextAttention(config.width, config.heads)
        self.norm2 = RMSNorm(config.width, config.norm_eps)
        self.ffn = FeedForward(config.width, hidden)

    def forward(self, x, key_bias):
        x = x + self.attn(self.norm1(x), key_bias)
        return x + self.ffn(self.norm2(x))


class TextEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        if config.kind != "small":
            raise ValueError(f"text encoder kind {config.kind!r} is not built here (only 'small')")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.width)
        self.pos_embed = nn.Parameter(torch.randn(config.max_tokens, config.width) * 0.02)
        self.blocks = nn.ModuleList(TextBlock(config) for _ in range(config.depth))
        self.norm = RMSNorm(config.width, config.norm_eps)
        self.word_norm = RMSNorm(config.width, config.norm_eps) if config.word_skip else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask [B, S] (int; mask 1 = token) → hidden [B, S, D]."""
        length = input_ids.shape[1]
        words = F.embedding(input_ids, self.embed.weight) + self.pos_embed[:length]
        key_bias = (1.0 - attention_mask.to(words.dtype))[:, None, None, :] * MASKED
        x = words
        for block in self.blocks:
            x = block(x, key_bias)
        if self.word_norm is None:
            return self.norm(x)
        return self.norm(x) + self.word_norm(words)
