"""The teacher-forced training forward of the generator (docs/hart.md §13), computed level by level.

teacher_inputs (the scale inputs from ground-truth tokens), level_groups, RopeCache (the
training RoPE tables per real token count), grouped_attention and training_forward (the
block-causal pass without a mask), and caption_ce: how likely an image's tokens are under a
given caption (binding negatives, lab/diagnose_binding.py).
"""
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from hart.config import HartConfig
from hart.model import HartModel
from hart.rope import apply_rope
from hart.sampler import encode_prompts


@torch.no_grad()
def teacher_inputs(quantizer, indices: torch.Tensor) -> torch.Tensor:
    """Inputs of scales 1..K-1 [B, Σ_{k≥1} pn_k², Cv]: Down_area(f_hat after k scales), in fp32.

    The same φ/resampling path the sampler's scaleUpdate graph runs, fed with ground-truth tokens.
    """
    side = quantizer.patch_nums[-1]
    f_hat = torch.zeros(indices.shape[0], quantizer.config.channels, side, side, device=indices.device)
    parts = []
    for k, idx in enumerate(quantizer.token_maps(indices)[:-1]):
        f_hat = quantizer.add_scale(f_hat, quantizer.lookup(idx), k)
        parts.append(quantizer.next_input(f_hat, k + 1))
    return torch.cat(parts, dim=1)


def level_groups(config: HartConfig, last_keep: int = 0):
    """[start, end) of each level in the training sequence: context, then scales 1..K-1.

    With last_keep > 0 only that many last-scale tokens are in the sequence.
    """
    sizes = [config.context_tokens] + [pn * pn for pn in config.patch_nums[1:]]
    if last_keep:
        sizes[-1] = last_keep
    groups, start = [], 0
    for size in sizes:
        groups.append((start, start + size))
        start += size
    return groups


class RopeCache:
    """The training RoPE tables [L, hd] of one row, per real token count n (they depend only on n),
    kept on the transformer's device."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.device = next(transformer.parameters()).device
        self.tables = {}

    def batch(self, n_valid):
        for n in set(n_valid):
            if n not in self.tables:
                cos, sin = self.transformer.training_rope([n])
                self.tables[n] = (cos[0].to(self.device), sin[0].to(self.device))
        return (torch.stack([self.tables[n][0] for n in n_valid]),
                torch.stack([self.tables[n][1] for n in n_valid]))


def grouped_attention(attn, x, cos, sin, groups, record=None):
    """The block-causal attention of forward_train, computed level by level without a mask.

    The sequence is ordered by level, so the queries of one level see exactly the keys before
    the level's end: slicing the keys gives the same result as the −∞ mask while computing
    ~40% fewer scores and no masked softmax over the whole square. Softmax in fp32.
    `record`, a list, receives per level the head-averaged weights on the text slots
    [B, queries, text] (diagnose_binding.py).
    """
    n, length, width = x.shape
    bias = torch.cat([attn.q_bias, torch.zeros_like(attn.q_bias), attn.v_bias])
    qkv = F.linear(x, attn.qkv_proj.weight, bias).reshape(n, length, 3, attn.heads, attn.head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    q = apply_rope(q, cos, sin) * attn.scale
    k = apply_rope(k, cos, sin)
    outs, text = [], groups[0][1]
    for start, end in groups:
        scores = torch.matmul(q[:, :, start:end], k[:, :, :end].transpose(-1, -2))
        weights = scores.float().softmax(dim=-1)
        if record is not None:
            record.append(weights[..., :text].mean(dim=1))
        outs.append(torch.matmul(weights, v[:, :, :end]))
    out = torch.cat(outs, dim=2).transpose(1, 2).reshape(n, length, width)
    return attn.proj(out)


def training_forward(tr, context, n_valid, scale_inputs, rope: RopeCache, last_order=None, record=None,
                     scales: int = 0):
    """forward_train's result (logits of every scale, hidden of the last scale), computed faster.

    scales > 0 runs only the first `scales` scales (block-causal: their logits are the same as in
    the whole sequence); the hidden states returned are then those of the last scale run.

    last_order [B, keep] (optional) keeps only those last-scale tokens in the sequence; the
    logits and hidden states of the last scale are then those of the kept tokens, in that order.
    record (optional, a list) receives one list per block of its attention on the text, per
    level (see grouped_attention).
    """
    c = tr.config
    side2 = c.latent_side ** 2
    x, head_cond = tr.condition(context)
    levels = tr.level_table()
    cos, sin = rope.batch(list(n_valid))
    if last_order is not None:
        prefix = cos.shape[1] - side2
        pick = torch.cat([torch.arange(prefix, device=last_order.device).expand(len(n_valid), -1),
                          prefix + last_order], dim=1)
        pick = pick[:, :, None].expand(-1, -1, cos.shape[-1])
        cos, sin = cos.gather(1, pick), sin.gather(1, pick)
        lead = scale_inputs[:, :-side2]
        tail = scale_inputs[:, -side2:].gather(1, last_order[:, :, None].expand(-1, -1, scale_inputs.shape[-1]))
        scale_inputs = torch.cat([lead, tail], dim=1)
    groups = level_groups(c, 0 if last_order is None else last_order.shape[1])
    if scales:
        groups = groups[:scales]
        cos, sin = cos[:, :groups[-1][1]], sin[:, :groups[-1][1]]
    parts = [x]
    for k, (start, end) in enumerate(groups[1:], start=1):
        offset = c.context_tokens
        parts.append(tr.scale_input(scale_inputs[:, start - offset:end - offset], levels[k]))
    x = torch.cat(parts, dim=1).float()
    for block in tr.blocks:
        levels_seen = None if record is None else []
        x = x + grouped_attention(block.attn, block.ln_wo_grad(x), cos, sin, groups, levels_seen)
        if record is not None:
            record.append(levels_seen)
        x = x + block.ffn(block.ln_wo_grad(x))
    last = groups[-1][1] - groups[-1][0]
    return tr.logits(x[:, c.context_tokens - 1:], head_cond), x[:, -last:]


def coarse_token_count(config: HartConfig, last_scale: int = 6) -> int:
    """Tokens of scales 0..last_scale-1: where layout, colours and counts are decided."""
    return sum(pn * pn for pn in config.patch_nums[:last_scale])


def caption_context(model: HartModel, captions: List[str], device=None) -> Tuple[torch.Tensor, List[int]]:
    """The transformer's context for these captions: the text encoder's output [N, T, D] without
    the prefix positions, and each caption's real token count."""
    ids, mask, n_valid = encode_prompts(model.config, captions)
    text = model.text_encoder(torch.from_numpy(ids.astype(np.int64)).to(device),
                              torch.from_numpy(mask.astype(np.int64)).to(device))
    return text[:, len(model.config.text_encoder.prefix_ids):], n_valid


def caption_ce(model: HartModel, captions: List[str], inputs: torch.Tensor, targets: torch.Tensor,
               rope: RopeCache, scales: int = 0) -> torch.Tensor:
    """Per-token cross-entropy [N, tokens] of the targets [N, T] under these captions, with these
    scale inputs, over the first `scales` scales (0: all), teacher-forced: how likely an image
    is under a caption other than its own (binding negatives, diagnose_binding.py)."""
    config = model.config
    text, n_valid = caption_context(model, captions, inputs.device)
    logits, _ = training_forward(model.transformer, text, n_valid, inputs, rope, scales=scales)
    count = coarse_token_count(config, scales) if scales else targets.shape[1]
    return F.cross_entropy(logits.float().reshape(-1, config.vocab_size), targets[:, :count].reshape(-1),
                           reduction="none").reshape(len(captions), -1)
