"""Sizes, memory and compute of a converted HART package, from the shapes alone.

Used to write docs/full-model.md for the published 1024 px model without its files:
parameters per package graph (counted on our modules), the package's bytes in each variant,
the KV cache and the largest activations of one 1024 px image, and the multiply-accumulates
(MACs) of every stage. Run `tools/py export.model_budget [PREFIX_TOKENS]` for the published model.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Tuple

from hart.config import HartConfig
from hart.qwen2 import Qwen2Config

# Which transformer parameters each package graph holds (docs/model-package.md §3). The level
# embedding MLP is in no graph: the exporter evaluates it into the `levels` table (and the
# condition graph's level-0 row is folded into one constant vector).
_GRAPH_OF_PREFIX = (
    ("blocks.", "transformer"),
    ("context_norm.", "condition"), ("context_embed.", "condition"), ("lvl_embed.", "levelMlp"),
    ("head_nm.ada_lin.", "condition"),
    ("head_nm.ln_wo_grad.", "head"), ("head.", "head"),
    ("decoder_norm.", "diffusionHead"), ("diffloss.", "diffusionHead"),
)


def transformer_graph_parameters(config: HartConfig) -> Dict[str, int]:
    """Parameters per graph; word_embed is read by scaleUpdate and diffusionHead (counted in both)."""
    from hart.transformer import HartTransformer
    model = HartTransformer(config, device="meta")
    counts: Dict[str, int] = {}
    for name, param in model.named_parameters():
        if name.startswith("word_embed."):
            graphs = ["scaleUpdate", "diffusionHead"]
        else:
            graphs = [g for prefix, g in _GRAPH_OF_PREFIX if name.startswith(prefix)]
        if len(graphs) == 0:
            raise AssertionError(f"{name} belongs to no graph")
        for g in graphs:
            counts[g] = counts.get(g, 0) + param.numel()
    return counts


def package_graph_parameters(config: HartConfig) -> Dict[str, int]:
    """Float weights stored in each graph of the package (after the exporter's constant folding)."""
    counts = transformer_graph_parameters(config)
    counts.pop("levelMlp")
    counts["condition"] += config.width          # the level-0 row, folded
    counts["decoder"] = decoder_parameters(config)
    counts["preview"] = 3 * config.latent_channels + 3
    return counts


def decoder_parameters(config: HartConfig) -> int:
    """The VAE decoder graph: post_quant_conv + decoder (built on CPU: ~65 M parameters at 1024 px)."""
    from hart.vae import Decoder
    z = config.latent_channels
    return sum(p.numel() for p in Decoder(config.vae).parameters()) + z * z * 9 + z


def qwen2_linears(q: Qwen2Config) -> List[Tuple[int, int]]:
    """(K, N) of every linear weight of the text encoder, in and out features."""
    h, kv = q.hidden_size, q.num_key_value_heads * q.head_dim
    per_layer = [(h, h), (h, kv), (h, kv), (h, h),
                 (h, q.intermediate_size), (h, q.intermediate_size), (q.intermediate_size, h)]
    return per_layer * q.num_hidden_layers


def qwen2_parameters(q: Qwen2Config) -> Dict[str, int]:
    h, kv = q.hidden_size, q.num_key_value_heads * q.head_dim
    linear = sum(k * n for k, n in qwen2_linears(q))
    small = q.num_hidden_layers * (h + 2 * kv + 2 * h) + h   # q/k/v biases, two norms per layer, final norm
    return {"embedding": q.vocab_size * h, "linear": linear, "small": small}


def text_encoder_bytes(q: Qwen2Config, bits: int, block_size: int = 32) -> int:
    """Weight bytes of the text encoder graph: int4 (MatMulNBits), int8 (DequantizeLinear) or float32."""
    p = qwen2_parameters(q)
    if bits == 32:
        return 4 * (p["embedding"] + p["linear"] + p["small"])
    embedding = p["embedding"] + 4 * q.vocab_size            # int8 rows + one float scale per row
    linear = 0
    for k, n in qwen2_linears(q):
        if bits == 4:
            blocks = -(-k // block_size)
            linear += n * blocks * block_size // 2 + 4 * n * blocks + n * -(-blocks // 2)
        else:
            linear += k * n + 4 * n + n                       # int8 weight, scale and zero point per column
    return embedding + linear + 4 * p["small"]


def table_bytes(config: HartConfig) -> int:
    c, h = config, config.latent_side
    floats = c.vocab_size * c.latent_channels + 4 * c.latent_channels * (c.latent_channels * 9 + 1)
    floats += c.num_scales * c.width + sum(2 * h * pn for pn in c.patch_nums)
    return 4 * floats


def package_bytes(config: HartConfig, q: Qwen2Config, text_bits: int = 4) -> Dict[str, Dict[str, int]]:
    """Weight bytes per graph and variant (graph structure and tokenizer.json not included)."""
    params = package_graph_parameters(config)
    out = {g: {"fp32": 4 * n, "fp16": 2 * n} for g, n in params.items()}
    out["textEncoder"] = {"fp32": text_encoder_bytes(q, text_bits)}
    out["tables"] = {"fp32": table_bytes(config)}
    return out


# ---------------------------------------------------------------------------------------------
# Compute


def scale_steps(config: HartConfig) -> List[Tuple[int, int]]:
    """(new tokens L, cached tokens P) of each transformer call: the text, then scales 1..K-1."""
    steps, cached = [(config.context_tokens, 0)], config.context_tokens
    for pn in config.patch_nums[1:]:
        steps.append((pn * pn, cached))
        cached += pn * pn
    return steps


def transformer_macs(config: HartConfig, rows: int) -> Dict[str, int]:
    """Linear layers and attention (QKᵀ and AV) of all transformer calls, for `rows` = 2B rows."""
    c = config
    per_token = c.depth * (4 * c.width * c.width + 3 * c.width * c.mlp_hidden)
    tokens = sum(l for l, _ in scale_steps(c))
    attention = sum(c.depth * 2 * l * (p + l) * c.width for l, p in scale_steps(c))
    return {"linear": rows * tokens * per_token, "attention": rows * attention}


def head_macs(config: HartConfig, rows: int) -> int:
    """Output head on every image-token position (step 0 keeps only the last text position)."""
    positions = 1 + sum(pn * pn for pn in config.patch_nums[1:])
    return rows * positions * config.width * config.vocab_size


def diffusion_macs(config: HartConfig, rows: int) -> int:
    """Denoiser MLP per step on both CFG halves of every last-scale token, all steps."""
    d, w, cv = config.diffusion, config.diffusion.width, config.latent_channels
    per_row = (cv * w + config.width * w + 256 * w + w * w + d.depth * (2 * w * w + 3 * w * w)
               + 2 * w * w + w * 2 * cv)
    tokens = config.patch_nums[-1] ** 2
    return d.steps * rows * tokens * per_row


def decoder_macs(config: HartConfig) -> int:
    """VAE decoder convolutions and attention for one image (analytic over VAR's layout)."""
    v, side = config.vae, config.latent_side
    ch, mult = v.ch, tuple(v.ch_mult)
    macs = 0

    def conv(cin, cout, k, s):
        return cin * cout * k * k * s * s

    def res(cin, cout, s):
        return conv(cin, cout, 3, s) + conv(cout, cout, 3, s) + (conv(cin, cout, 1, s) if cin != cout else 0)

    def attn(c, s):
        return 3 * c * c * s * s + 2 * (s * s) ** 2 * c + c * c * s * s

    z = config.latent_channels
    block_in = ch * mult[-1]
    macs += conv(z, z, 3, side) + conv(z, block_in, 3, side)                   # post_quant_conv, conv_in
    macs += 2 * res(block_in, block_in, side) + attn(block_in, side)          # mid
    s = side
    for i in reversed(range(len(mult))):
        block_out = ch * mult[i]
        for _ in range(v.num_res_blocks + 1):
            macs += res(block_in, block_out, s)
            block_in = block_out
            if i == len(mult) - 1 and v.attn_resolution_lowest:
                macs += attn(block_in, s)
        if i != 0:
            s *= 2
            macs += conv(block_in, block_in, 3, s)
    return macs + conv(block_in, 3, 3, s)


def text_encoder_macs(q: Qwen2Config, tokens: int) -> int:
    linear = sum(k * n for k, n in qwen2_linears(q)) * tokens
    attention = q.num_hidden_layers * 2 * tokens * tokens * q.hidden_size   # causal masks half of it; counted full
    return linear + attention


def kv_cache_bytes(config: HartConfig, positions: int, rows: int, bytes_per: int = 4) -> int:
    return config.depth * 2 * rows * positions * config.width * bytes_per


def stage_macs(config: HartConfig, q: Qwen2Config, prefix_tokens: int, rows: int = 2) -> Dict[str, int]:
    """MACs of one image per stage; rows = 2 is what runs (CFG doubles the batch), 1 a single pass."""
    t = transformer_macs(config, rows)
    return {
        "text encoder": text_encoder_macs(q, prefix_tokens + config.context_tokens),
        "transformer linear": t["linear"], "transformer attention": t["attention"],
        "head": head_macs(config, rows), "diffusion": diffusion_macs(config, rows),
        "decoder": decoder_macs(config),
    }


# ---------------------------------------------------------------------------------------------
# The largest GPU buffers (the manifest's `requirements`, docs/model-package.md §1)

ROWS = 2   # one image: its conditional and unconditional CFG rows


def decoder_activation_elements(config: HartConfig) -> Tuple[int, int]:
    """(largest feature map, mid-block attention scores) of the VAE decoder, in elements, one image.

    At each resolution the maps carry the level's channels and, coming in from the level below
    (or the mid block), the wider channels of that level.
    """
    v, side = config.vae, config.latent_side
    widths = [v.ch * m for m in v.ch_mult]
    largest, incoming = 0, widths[-1]
    for i in reversed(range(len(widths))):
        s = side * 2 ** (len(widths) - 1 - i)
        largest = max(largest, max(incoming, widths[i]) * s * s)
        incoming = widths[i]
    return largest, (side * side) ** 2 if v.attn_resolution_lowest else 0


def largest_buffers(config: HartConfig, attention: str, fp16: bool,
                    text_encoder: Dict[str, int]) -> Dict[str, int]:
    """Bytes of the largest buffer of each kind that one image (B = 1, two CFG rows) needs in the
    fp32 or the fp16 graphs, at the last scale where sizes peak.

    `text_encoder` gives the text encoder's own candidates (its largest weight and activation),
    which depend on its kind. In the fp16 graphs weights, KV cache and most activations are
    float16, but normalisation statistics stay float32 (export/fp16.py), and so do the
    graphs' float32 inputs and outputs: those count 4 bytes.
    """
    c, half = config, 2 if fp16 else 4
    length, cached = scale_steps(c)[-1]
    positions = cached + length
    out = {f"textEncoder {k}": v for k, v in text_encoder.items()}
    out["kv cache, one block's K or V"] = ROWS * positions * c.width * half
    if attention == "plain":
        # MatMul q·kᵀ and its Softmax: [rows, heads, L, P + L]. Fused attention never writes it.
        out["attention scores"] = ROWS * c.heads * length * positions * half
    out["transformer activations"] = ROWS * length * max(3 * c.width * half, c.mlp_hidden * half, c.width * 4)
    out["transformer weight"] = max(3 * c.width, c.mlp_hidden) * c.width * half
    out["head logits"] = ROWS * length * c.vocab_size * half
    out["head weight"] = c.vocab_size * c.width * half
    feature_map, scores = decoder_activation_elements(c)
    out["decoder activations"] = feature_map * 4          # GroupNorm statistics are float32 in both
    out["decoder attention scores"] = scores * half
    return out


def requirements(config: HartConfig, attention: str, variants, text_encoder_fp32: Dict[str, int],
                 text_encoder_fp16: Dict[str, int]) -> dict:
    """The manifest's `requirements`: per variant the largest buffer (as maxBufferBytes and, since
    kernels bind whole tensors, maxBindingBytes); shaderF16 false: fp32 entries compute in float32."""
    out = {}
    for variant in variants:
        fp16 = variant == "fp16"
        largest = max(largest_buffers(config, attention, fp16, text_encoder_fp16 if fp16 else text_encoder_fp32).values())
        out[variant] = {"maxBufferBytes": largest, "maxBindingBytes": largest}
    out["shaderF16"] = False
    return out


def small_text_encoder_buffers(config: HartConfig, fp16: bool) -> Dict[str, int]:
    """The shapes-world text encoder's largest weight and activation (two rows of max_tokens)."""
    t, half = config.text_encoder, 2 if fp16 else 4
    tokens, hidden = t.max_tokens, int(t.width * 8 / 3 + 255) // 256 * 256     # its SwiGLU width
    return {"weight": max(t.vocab_size, 3 * t.width, hidden) * t.width * half,
            "activations": ROWS * max(tokens * max(3 * t.width, hidden) * half, t.heads * tokens * tokens * half,
                                      tokens * t.width * 4)}


def qwen2_text_encoder_buffers(q: Qwen2Config, tokens: int, bits: int) -> Dict[str, int]:
    """Qwen2's largest weight (the embedding: int8 rows in the int4 and int8 packages, fp32 at 32
    bits) and activation (MLP or attention scores, float32) for two rows of `tokens`."""
    embedding = q.vocab_size * q.hidden_size * (4 if bits == 32 else 1)
    mlp = q.intermediate_size * q.hidden_size * (4 if bits == 32 else 1 if bits == 8 else 0.5)
    return {"weight": int(max(embedding, mlp)),
            "activations": ROWS * tokens * max(q.intermediate_size, q.num_attention_heads * tokens) * 4}


def report(config: HartConfig, q: Qwen2Config, prefix_tokens: int, text_bits: int = 4) -> str:
    gb = lambda n: f"{n / 1e9:,.3f} GB"      # noqa: E731
    lines = []
    for graph, variants in package_bytes(config, q, text_bits).items():
        lines.append(f"{graph:14s} " + "  ".join(f"{v} {gb(b)}" for v, b in variants.items()))
    qp = qwen2_parameters(q)
    lines.append(f"qwen2 params: {sum(qp.values()):,} (embedding {qp['embedding']:,})")
    for rows in (2, 1):
        stages = stage_macs(config, q, prefix_tokens, rows)
        lines.append(f"MACs with {rows} transformer/diffusion row(s) per image:")
        for name, macs in stages.items():
            lines.append(f"  {name:22s} {macs / 1e12:8.3f} T")
        lines.append(f"  total {sum(stages.values()) / 1e12:.3f} T")
    total_positions = config.context_tokens + sum(pn * pn for pn in config.patch_nums[1:])
    lines.append(f"KV cache fp32 at the end: {gb(kv_cache_bytes(config, total_positions, 2))}")
    for k, (l, p) in enumerate(scale_steps(config)):
        lines.append(f"step {k:2d}: {l:5d} new, {p:5d} cached, scores {gb(2 * config.heads * l * (p + l) * 4)}")
    for attention in ("plain", "fused"):
        for fp16 in (False, True):
            buffers = largest_buffers(config, attention, fp16,
                                      qwen2_text_encoder_buffers(q, prefix_tokens + config.context_tokens, text_bits))
            name, size = max(buffers.items(), key=lambda item: item[1])
            lines.append(f"largest buffer, {attention} attention, {'fp16' if fp16 else 'fp32'}: {gb(size)} ({name}); "
                         + ", ".join(f"{k} {gb(v)}" for k, v in sorted(buffers.items(), key=lambda i: -i[1])[1:4]))
    return "\n".join(lines)


if __name__ == "__main__":
    from hart.config import CONFIGS
    qwen = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6)
    print(report(CONFIGS["hart-0.7b-1024px"], qwen, prefix_tokens=int(sys.argv[1]) if len(sys.argv) > 1 else 150))
