"""HART's autoregressive transformer (the released text-to-image model's configuration).

Llama-style blocks without per-block AdaLN (docs/hart.md §4): one RMSNorm weight shared by the
attention and MLP sublayers, q/v biases (no k bias), RoPE on q and k, softmax scale
0.25/√hd, SwiGLU. Text enters as a 300-token (T-token) prefix; the output head is modulated
by an AdaLN whose condition is the max-pooled text (docs/hart.md §5).

Module and parameter names match the published checkpoint (`llm/ema_model.bin`), so its
state dict loads with strict=True once the buffers HART stores (lvl_1L, attn_bias_for_masking,
zero_k_bias) are dropped.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import HartConfig
from .diffusion import DiffLoss, timestep_embedding
from .rope import apply_rope, apply_rope_bsnh, image_rope, text_positions, text_rope

KV = Tuple[torch.Tensor, torch.Tensor]

# How an exported step graph computes attention (docs/model-package.md §3): "plain" writes
# MatMul/Softmax/MatMul (the whole score tensor exists), "fused" one com.microsoft
# MultiHeadAttention node per block, which onnxruntime's WebGPU provider runs as flash attention.
ATTENTION_KINDS = ("plain", "fused")

# Level embeddings use the same 256-d sinusoid as the diffusion timestep (docs/hart.md §3).
LEVEL_FREQUENCY_DIM = 256


class RMSNorm(nn.Module):
    """RMSNorm with a learned weight (HART's fused kernel always has one, docs/hart.md §4)."""

    def __init__(self, dim: int, eps: float, device=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.weight


class LevelEmbedding(nn.Module):
    """HART's `lvl_embed` (a TimestepEmbedder over the scale index): key path `mlp.{0,2}`."""

    def __init__(self, width: int, device=None):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(LEVEL_FREQUENCY_DIM, width, device=device), nn.SiLU(), nn.Linear(width, width, device=device)
        )

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(levels, LEVEL_FREQUENCY_DIM))


class FusedAttention(torch.autograd.Function):
    """softmax(scale·q·kᵀ)·v over [past + new] keys, exported as com.microsoft MultiHeadAttention.

    q, k, v [N, L, H·hd] (heads side by side, RoPE already applied to q and k); past_k/past_v
    [N, H, P, hd]. Returns the attended values [N, L, H·hd] and present_k/present_v
    [N, H, P + L, hd], which is the operator's own contract (query/key/value in BSD layout,
    past and present in BNSH), so the graph's cache inputs and outputs keep their shapes.
    """

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, heads: int, scale: float):
        n, length, width = q.shape
        hd = width // heads

        def heads_first(x):
            return x.reshape(n, length, heads, hd).transpose(1, 2)

        keys = torch.cat([past_k, heads_first(k)], dim=2)
        values = torch.cat([past_v, heads_first(v)], dim=2)
        scores = torch.matmul(heads_first(q) * scale, keys.transpose(-1, -2))
        out = torch.matmul(scores.softmax(dim=-1), values)
        return out.transpose(1, 2).reshape(n, length, width), keys, values

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, heads: int, scale: float):
        absent = g.op("prim::Constant")                      # an omitted optional input
        absent.setType(torch._C.OptionalType.ofTensor())
        out, present_k, present_v = g.op(
            "com.microsoft::MultiHeadAttention", q, k, v, absent, absent, absent, past_k, past_v,
            num_heads_i=heads, scale_f=scale, outputs=3)
        # ONNX's own shape inference does not know the operator, so the outputs' element types
        # come from here (the fp16 conversion reads them); the exporter names their sizes
        # symbolically.
        out.setType(q.type())
        present_k.setType(past_k.type())
        present_v.setType(past_v.type())
        return out, present_k, present_v


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, device=None, scale: float = 0.25):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        # HART's is 0.25/√hd, not 1/√hd: VAR's scale when attention is not L2-normalised (docs/hart.md §4).
        self.scale = scale / math.sqrt(self.head_dim)
        self.qkv_proj = nn.Linear(width, 3 * width, bias=False, device=device)
        self.q_bias = nn.Parameter(torch.zeros(width, device=device))
        self.v_bias = nn.Parameter(torch.zeros(width, device=device))
        self.proj = nn.Linear(width, width, device=device)

    def forward(self, x, cos, sin, past: Optional[KV] = None, attn_bias: Optional[torch.Tensor] = None,
                fused: bool = False):
        n, length, width = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv_proj.weight, bias).reshape(n, length, 3, self.heads, self.head_dim)
        if fused:
            if past is None or attn_bias is not None:
                raise ValueError("fused attention is for cached, unmasked inference steps")
            q, k, v = qkv.unbind(2)                               # each [N, L, H, hd]
            q = apply_rope_bsnh(q, cos, sin).reshape(n, length, width)
            k = apply_rope_bsnh(k, cos, sin).reshape(n, length, width)
            out, keys, values = FusedAttention.apply(q, k, v.reshape(n, length, width), past[0], past[1],
                                                     self.heads, self.scale)
            return self.proj(out), (keys, values)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)          # each [N, H, L, hd]
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        # Scale q before the product: the raw q·k is 1/scale = 4√hd times larger and is what
        # would overflow first in a float16 graph.
        scores = torch.matmul(q * self.scale, k.transpose(-1, -2))
        if attn_bias is not None:
            scores = scores + attn_bias
        out = torch.matmul(scores.softmax(dim=-1), v)
        out = out.transpose(1, 2).reshape(n, length, width)
        return self.proj(out), (k, v)


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) · up(x)), no biases."""

    def __init__(self, width: int, hidden: int, device=None):
        super().__init__()
        self.gate_proj = nn.Linear(width, hidden, bias=False, device=device)
        self.up_proj = nn.Linear(width, hidden, bias=False, device=device)
        self.down_proj = nn.Linear(hidden, width, bias=False, device=device)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: HartConfig, device=None):
        super().__init__()
        # One norm weight for both sublayers: HART's block has a single `ln_wo_grad`.
        self.ln_wo_grad = RMSNorm(config.width, config.norm_eps, device=device)
        self.attn = Attention(config.width, config.heads, device=device, scale=config.attention_scale)
        self.ffn = FeedForward(config.width, config.mlp_hidden, device=device)

    def forward(self, x, cos, sin, past: Optional[KV] = None, attn_bias=None, fused: bool = False):
        attended, present = self.attn(self.ln_wo_grad(x), cos, sin, past, attn_bias, fused)
        x = x + attended
        x = x + self.ffn(self.ln_wo_grad(x))
        return x, present


class AdaLNBeforeHead(nn.Module):
    """`head_nm`: RMSNorm(x)·(1 + scale) + shift, [scale, shift] = Linear(SiLU(pooled text))."""

    def __init__(self, width: int, eps: float, device=None):
        super().__init__()
        self.ln_wo_grad = RMSNorm(width, eps, device=device)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width, device=device))

    def condition(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.ada_lin(pooled)

    def forward(self, x: torch.Tensor, head_cond: torch.Tensor) -> torch.Tensor:
        scale, shift = head_cond[:, None, :].chunk(2, dim=-1)
        return self.ln_wo_grad(x) * (1 + scale) + shift


class HartTransformer(nn.Module):
    def __init__(self, config: HartConfig, device=None):
        super().__init__()
        self.config = config
        c = config
        self.word_embed = nn.Linear(c.latent_channels, c.width, device=device)
        self.context_norm = RMSNorm(c.context_dim, c.norm_eps, device=device)
        self.context_embed = nn.Linear(c.context_dim, c.width, device=device)
        self.lvl_embed = LevelEmbedding(c.width, device=device)
        self.blocks = nn.ModuleList(Block(c, device=device) for _ in range(c.depth))
        self.head_nm = AdaLNBeforeHead(c.width, c.norm_eps, device=device)
        self.head = nn.Linear(c.width, c.vocab_size, device=device)
        self.decoder_norm = RMSNorm(c.width, c.norm_eps, device=device)
        self.diffloss = DiffLoss(c.diffusion)

    # Conditioning. --------------------------------------------------------------------

    def level_table(self) -> torch.Tensor:
        """[K, C]: row k is the level embedding added to every input token of scale k."""
        levels = torch.arange(self.config.num_scales, dtype=torch.float32, device=self.head.weight.device)
        return self.lvl_embed(levels)

    def condition(self, context: torch.Tensor, level0: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """context [N, T, D] → (step-0 input x [N, T, C], head_cond [N, 2C]).

        The head's AdaLN pools the embedded text by max over all T slots, padding included
        (docs/hart.md §5); the step-0 input adds the level-0 embedding (pass it precomputed to
        keep the level MLP out of an exported graph).
        """
        cond = self.context_embed(self.context_norm(context))
        if level0 is None:
            level0 = self.lvl_embed(torch.zeros(1, dtype=torch.float32, device=context.device))
        head_cond = self.head_nm.condition(cond.max(dim=1).values)
        return cond + level0, head_cond

    def scale_input(self, latents: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Input tokens of a scale: word_embed of the down-sampled f_hat [.., L, Cv] plus its level row."""
        return self.word_embed(latents) + level

    # One inference step with a KV cache. -----------------------------------------------

    def step(self, x, cos, sin, past: Optional[Sequence[KV]] = None,
             fused: bool = False) -> Tuple[torch.Tensor, List[KV]]:
        """Run all blocks on new tokens x [N, L, C]; attention is unmasked over cache + new tokens.

        fused=True (needs past, possibly empty) computes attention with FusedAttention, which
        exports as one MultiHeadAttention node per block.
        """
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, None if past is None else past[i], fused=fused)
            present.append(kv)
        return x, present

    # Output head. ---------------------------------------------------------------------

    def logits(self, hidden: torch.Tensor, head_cond: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_nm(hidden, head_cond))

    def guided_logits(self, hidden, head_cond, guidance) -> torch.Tensor:
        """CFG on logits: (1 + t)·cond − t·uncond, rows [0, B) conditional, [B, 2B) unconditional."""
        logits = self.logits(hidden, head_cond)
        pair = logits.reshape(2, -1, logits.shape[1], logits.shape[2])
        return (1 + guidance) * pair[0] - guidance * pair[1]

    def diffusion_condition(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """z [N·L, C] for the diffusion head from the last scale's hidden [N, L, C] and hard tokens [B, L, Cv].

        Both CFG halves see the same sampled tokens (docs/hart.md §8).
        """
        embedded = self.word_embed(tokens)
        z = self.decoder_norm(hidden + torch.cat([embedded, embedded], dim=0))
        return z.reshape(-1, z.shape[-1])

    # Teacher-forced training forward. ---------------------------------------------------

    def scale_levels(self) -> List[int]:
        """Level of every position of the training sequence [T context + Σ_{k≥1} pn_k² tokens]."""
        levels = [0] * self.config.context_tokens
        for k, pn in enumerate(self.config.patch_nums[1:], start=1):
            levels += [k] * (pn * pn)
        return levels

    def block_causal_bias(self, device=None) -> torch.Tensor:
        """Additive mask: position i sees j iff level(i) ≥ level(j) (docs/hart.md §9)."""
        levels = torch.tensor(self.scale_levels(), device=device)
        allowed = levels[:, None] >= levels[None, :]
        return torch.zeros(allowed.shape, device=device).masked_fill(~allowed, float("-inf"))

    def training_rope(self, n_valid: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        tables = [text_rope(text_positions(n_valid, c.context_tokens), c.head_dim, c.rope_theta)]
        for pn in c.patch_nums[1:]:
            tables.append(image_rope(pn, c.latent_side, [n - 1 for n in n_valid], c.head_dim, c.rope_theta))
        return torch.cat([t[0] for t in tables], dim=1), torch.cat([t[1] for t in tables], dim=1)

    def forward_train(self, context: torch.Tensor, n_valid: Sequence[int], scale_inputs: torch.Tensor):
        """One block-causal pass over [context + every scale] (teacher forcing, docs/hart.md §13).

        context [B, T, D] (CFG dropout already applied by the caller), n_valid the real token
        count of each row (for RoPE), scale_inputs [B, Σ_{k≥1} pn_k², Cv] the down-sampled
        f_hat inputs of scales 1..K-1.
        Returns logits [B, Σ_k pn_k², V] for every scale (scale 0 from the last text position)
        and the last block's hidden [B, pn_{K-1}², C] at the last scale (the diffusion input).
        """
        c = self.config
        x, head_cond = self.condition(context)
        levels = self.level_table()
        parts, start = [x], 0
        for k, pn in enumerate(c.patch_nums[1:], start=1):
            parts.append(self.scale_input(scale_inputs[:, start:start + pn * pn], levels[k]))
            start += pn * pn
        x = torch.cat(parts, dim=1)
        cos, sin = self.training_rope(n_valid)
        cos, sin = cos.to(x.device), sin.to(x.device)
        bias = self.block_causal_bias(x.device)
        for block in self.blocks:
            x, _ = block(x, cos, sin, None, bias)
        logits = self.logits(x[:, c.context_tokens - 1:], head_cond)
        return logits, x[:, -c.latent_side ** 2:]


def count_parameters(config: HartConfig) -> int:
    """Parameters of the transformer + diffusion head, without materialising the transformer."""
    model = HartTransformer(config, device="meta")
    return sum(p.numel() for p in model.parameters())
