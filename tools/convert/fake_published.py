"""Build a small stand-in for the published HART files, for testing the converter.

It writes the folder layout and file formats of `mit-han-lab/hart-0.7b-1024px` and the
Qwen2 text encoder, at a reduced size and with random weights:

    OUT/hart/llm/config.json          HART's field names (hart_transformer_t2i)
    OUT/hart/llm/model.safetensors    non-EMA weights, fp16 (the converter must NOT use them)
    OUT/hart/llm/ema_model.bin        EMA weights, fp32, plus the buffers lvl_1L,
                                      attn_bias_for_masking and blocks.{i}.attn.zero_k_bias
    OUT/hart/tokenizer/config.json    hart_autoencoder_with_disc fields
    OUT/hart/tokenizer/model.safetensors  `vae.*` weights, `disc.*` discriminator weights and
                                      `vae.quantize.ema_vocab_hit_SV`
    OUT/qwen/config.json, model.safetensors (bf16, `model.*` keys), tokenizer.json (a small
                                      byte-level BPE shaped like Qwen2's), tokenizer_config.json

The key names and shapes are enumerated here from the published architecture (docs/hart.md §10.1,
§4.1, §5.3; VAR's basic_vae layout; Hugging Face Qwen2), not taken from our modules, so a
conversion test checks that our modules really load the published names.

Usage: tools/py convert.fake_published --out DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections import Counter, OrderedDict
from typing import Dict, List, Sequence, Tuple

import torch

from convert.safetensors import save_file

Shapes = "OrderedDict[str, Tuple[int, ...]]"

# Reduced-size values, in the published config files' field names.
LLM_CONFIG = {
    "model_type": "hart_transformer_t2i", "architectures": ["HARTForT2I"],
    "depth": 2, "embed_dim": 128, "num_heads": 2, "mlp_ratio": 4.0, "norm_eps": 1e-6,
    "patch_nums": [1, 2, 3, 4], "context_token": 24, "context_dim": 64,
    "drop_rate": 0.0, "attn_drop_rate": 0.0, "drop_path_rate": 0.0, "shared_aln": False,
    "cond_drop_rate": 0.1, "attn_l2_norm": False, "flash_if_available": True, "fused_if_available": True,
    "mlp_type": "llama", "attn_type": "llama", "disable_aln": True, "use_timestep_embed": True,
    "sep_aln_pooling_mode": "max", "use_cross_attn": False, "diff_width": 64, "diff_depth": 2,
    "num_sampling_steps": "8", "diffusion_batch_mul": 4, "sampler": "iddpm", "use_context_norm": True,
    "context_norm_scale": 1.0, "diffusion_head_repeats": 1, "vae_path": None,
}
TOKENIZER_CONFIG = {
    "model_type": "hart_autoencoder_with_disc", "architectures": ["HARTAutoEncoderWithDisc"],
    "vocab_size": 64, "z_channels": 8, "ch": 32, "dropout": 0.0, "beta": 0.25, "using_znorm": False,
    "quant_conv_ks": 3, "quant_resi": 0.5, "share_quant_resi": 4, "default_qresi_counts": 0,
    "v_patch_nums": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16], "test_mode": False, "ch_mult": [1, 1, 2, 2, 2],
    "levels": [8, 8, 8, 6, 5], "quantizer_type": "var_hybrid", "hybrid": False,
    "disable_quant_resi": False, "freeze_codebook_for_hybrid": True, "double_decoder": False,
}
QWEN_CONFIG = {
    "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu",
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "max_position_embeddings": 512, "tie_word_embeddings": True, "use_sliding_window": False,
    "sliding_window": 512, "max_window_layers": 2, "rope_scaling": None, "torch_dtype": "bfloat16",
    "bos_token_id": 0, "eos_token_id": 1,
}
NUM_RES_BLOCKS = 2  # HART's tokenizer hard-codes it
DISC_NDF = 8        # discriminator width (64 in HART; only its presence matters here)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


# ---------------------------------------------------------------------------------------------
# Published key names and shapes


def transformer_shapes(cfg: dict, latent_channels: int, vocab_size: int) -> Shapes:
    c, d = cfg["embed_dim"], cfg["context_dim"]
    hidden = int((c * cfg["mlp_ratio"] * 2) / 3 + 255) // 256 * 256
    s: Shapes = OrderedDict()
    s["word_embed.weight"], s["word_embed.bias"] = (c, latent_channels), (c,)
    s["context_norm.weight"] = (d,)
    s["context_embed.weight"], s["context_embed.bias"] = (c, d), (c,)
    s["lvl_embed.mlp.0.weight"], s["lvl_embed.mlp.0.bias"] = (c, 256), (c,)
    s["lvl_embed.mlp.2.weight"], s["lvl_embed.mlp.2.bias"] = (c, c), (c,)
    for i in range(cfg["depth"]):
        p = f"blocks.{i}."
        s[p + "ln_wo_grad.weight"] = (c,)
        s[p + "attn.qkv_proj.weight"] = (3 * c, c)
        s[p + "attn.q_bias"], s[p + "attn.v_bias"] = (c,), (c,)
        s[p + "attn.proj.weight"], s[p + "attn.proj.bias"] = (c, c), (c,)
        s[p + "ffn.gate_proj.weight"], s[p + "ffn.up_proj.weight"] = (hidden, c), (hidden, c)
        s[p + "ffn.down_proj.weight"] = (c, hidden)
    s["head_nm.ln_wo_grad.weight"] = (c,)
    s["head_nm.ada_lin.1.weight"], s["head_nm.ada_lin.1.bias"] = (2 * c, c), (2 * c,)
    s["head.weight"], s["head.bias"] = (vocab_size, c), (vocab_size,)
    s["decoder_norm.weight"] = (c,)
    w, cv = cfg["diff_width"], latent_channels
    n = "diffloss.net."
    s[n + "time_embed.mlp.0.weight"], s[n + "time_embed.mlp.0.bias"] = (w, 256), (w,)
    s[n + "time_embed.mlp.2.weight"], s[n + "time_embed.mlp.2.bias"] = (w, w), (w,)
    s[n + "cond_embed.weight"], s[n + "cond_embed.bias"] = (w, c), (w,)
    s[n + "input_proj.weight"], s[n + "input_proj.bias"] = (w, cv), (w,)
    for k in range(cfg["diff_depth"]):
        r = f"{n}res_blocks.{k}."
        s[r + "in_ln.weight"], s[r + "in_ln.bias"] = (w,), (w,)
        s[r + "mlp.0.weight"], s[r + "mlp.0.bias"] = (w, w), (w,)
        s[r + "mlp.2.weight"], s[r + "mlp.2.bias"] = (w, w), (w,)
        s[r + "adaLN_modulation.1.weight"], s[r + "adaLN_modulation.1.bias"] = (3 * w, w), (3 * w,)
    s[n + "final_layer.linear.weight"], s[n + "final_layer.linear.bias"] = (2 * cv, w), (2 * cv,)
    s[n + "final_layer.adaLN_modulation.1.weight"] = (2 * w, w)
    s[n + "final_layer.adaLN_modulation.1.bias"] = (2 * w,)
    return s


def _resnet(s: Shapes, p: str, cin: int, cout: int) -> None:
    s[p + "norm1.weight"], s[p + "norm1.bias"] = (cin,), (cin,)
    s[p + "conv1.weight"], s[p + "conv1.bias"] = (cout, cin, 3, 3), (cout,)
    s[p + "norm2.weight"], s[p + "norm2.bias"] = (cout,), (cout,)
    s[p + "conv2.weight"], s[p + "conv2.bias"] = (cout, cout, 3, 3), (cout,)
    if cin != cout:
        s[p + "nin_shortcut.weight"], s[p + "nin_shortcut.bias"] = (cout, cin, 1, 1), (cout,)


def _attn(s: Shapes, p: str, c: int) -> None:
    s[p + "norm.weight"], s[p + "norm.bias"] = (c,), (c,)
    s[p + "qkv.weight"], s[p + "qkv.bias"] = (3 * c, c, 1, 1), (3 * c,)
    s[p + "proj_out.weight"], s[p + "proj_out.bias"] = (c, c, 1, 1), (c,)


def tokenizer_shapes(cfg: dict) -> Shapes:
    """VAR's VQ-VAE (basic_vae.py Encoder/Decoder, attention at the lowest level) + quantizer."""
    ch, mult, z, v = cfg["ch"], cfg["ch_mult"], cfg["z_channels"], cfg["vocab_size"]
    levels = len(mult)
    s: Shapes = OrderedDict()
    e = "encoder."
    s[e + "conv_in.weight"], s[e + "conv_in.bias"] = (ch, 3, 3, 3), (ch,)
    block_in = ch
    for i in range(levels):
        block_in = ch * ((1,) + tuple(mult))[i]
        block_out = ch * mult[i]
        for j in range(NUM_RES_BLOCKS):
            _resnet(s, f"{e}down.{i}.block.{j}.", block_in, block_out)
            block_in = block_out
            if i == levels - 1:
                _attn(s, f"{e}down.{i}.attn.{j}.", block_in)
        if i != levels - 1:
            s[f"{e}down.{i}.downsample.conv.weight"] = (block_in, block_in, 3, 3)
            s[f"{e}down.{i}.downsample.conv.bias"] = (block_in,)
    _resnet(s, e + "mid.block_1.", block_in, block_in)
    _attn(s, e + "mid.attn_1.", block_in)
    _resnet(s, e + "mid.block_2.", block_in, block_in)
    s[e + "norm_out.weight"], s[e + "norm_out.bias"] = (block_in,), (block_in,)
    s[e + "conv_out.weight"], s[e + "conv_out.bias"] = (z, block_in, 3, 3), (z,)

    d = "decoder."
    block_in = ch * mult[-1]
    s[d + "conv_in.weight"], s[d + "conv_in.bias"] = (block_in, z, 3, 3), (block_in,)
    _resnet(s, d + "mid.block_1.", block_in, block_in)
    _attn(s, d + "mid.attn_1.", block_in)
    _resnet(s, d + "mid.block_2.", block_in, block_in)
    up: Dict[int, Shapes] = {}
    for i in reversed(range(levels)):
        level: Shapes = OrderedDict()
        block_out = ch * mult[i]
        for j in range(NUM_RES_BLOCKS + 1):
            _resnet(level, f"{d}up.{i}.block.{j}.", block_in, block_out)
            block_in = block_out
            if i == levels - 1:
                _attn(level, f"{d}up.{i}.attn.{j}.", block_in)
        if i != 0:
            level[f"{d}up.{i}.upsample.conv.weight"] = (block_in, block_in, 3, 3)
            level[f"{d}up.{i}.upsample.conv.bias"] = (block_in,)
        up[i] = level
    for i in range(levels):
        s.update(up[i])
    s[d + "norm_out.weight"], s[d + "norm_out.bias"] = (block_in,), (block_in,)
    s[d + "conv_out.weight"], s[d + "conv_out.bias"] = (3, block_in, 3, 3), (3,)

    s["quant_conv.weight"], s["quant_conv.bias"] = (z, z, 3, 3), (z,)
    s["post_quant_conv.weight"], s["post_quant_conv.bias"] = (z, z, 3, 3), (z,)
    s["quantize.embedding.weight"] = (v, z)
    for j in range(cfg["share_quant_resi"]):
        s[f"quantize.quant_resi.qresi_ls.{j}.weight"] = (z, z, 3, 3)
        s[f"quantize.quant_resi.qresi_ls.{j}.bias"] = (z,)
    return s


def discriminator_shapes() -> Shapes:
    """PatchGAN NLayerDiscriminator(input_nc=3, n_layers=3) layout, narrowed to DISC_NDF."""
    s: Shapes = OrderedDict()
    n = DISC_NDF
    s["main.0.weight"], s["main.0.bias"] = (n, 3, 4, 4), (n,)
    s["main.2.weight"] = (2 * n, n, 4, 4)
    s["main.3.weight"], s["main.3.bias"] = (2 * n,), (2 * n,)
    s["main.3.running_mean"], s["main.3.running_var"] = (2 * n,), (2 * n,)
    s["main.11.weight"], s["main.11.bias"] = (1, 2 * n, 4, 4), (1,)
    return s


def qwen2_shapes(cfg: dict) -> Shapes:
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    s: Shapes = OrderedDict()
    s["model.embed_tokens.weight"] = (cfg["vocab_size"], h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        s[p + "self_attn.q_proj.weight"], s[p + "self_attn.q_proj.bias"] = (h, h), (h,)
        s[p + "self_attn.k_proj.weight"], s[p + "self_attn.k_proj.bias"] = (kv, h), (kv,)
        s[p + "self_attn.v_proj.weight"], s[p + "self_attn.v_proj.bias"] = (kv, h), (kv,)
        s[p + "self_attn.o_proj.weight"] = (h, h)
        s[p + "mlp.gate_proj.weight"], s[p + "mlp.up_proj.weight"] = (inter, h), (inter, h)
        s[p + "mlp.down_proj.weight"] = (h, inter)
        s[p + "input_layernorm.weight"], s[p + "post_attention_layernorm.weight"] = (h,), (h,)
    s["model.norm.weight"] = (h,)
    return s


def random_tensors(shapes: Shapes, generator: torch.Generator) -> "OrderedDict[str, torch.Tensor]":
    """Matrices N(0, 1/fan_in); norm weights 1 + N(0, 0.1²); biases and other vectors N(0, 0.1²)."""
    out = OrderedDict()
    for name, shape in shapes.items():
        noise = torch.randn(shape, generator=generator)
        if len(shape) >= 2:
            out[name] = noise / math.sqrt(math.prod(shape[1:]))
        elif name.endswith(".weight"):  # the only 1-D weights are norm scales
            out[name] = 1.0 + 0.1 * noise
        else:
            out[name] = 0.1 * noise
    return out


def hart_buffers(cfg: dict) -> "OrderedDict[str, torch.Tensor]":
    """The buffers HART's strict state dict stores (docs/hart.md §12.2), with their real contents."""
    levels = [0] * cfg["context_token"]
    for k, pn in enumerate(cfg["patch_nums"][1:], start=1):
        levels += [k] * (pn * pn)
    lvl = torch.tensor(levels)
    bias = torch.where(lvl[:, None] >= lvl[None, :], 0.0, -math.inf).reshape(1, 1, len(levels), len(levels))
    out = OrderedDict(lvl_1L=lvl.reshape(1, -1), attn_bias_for_masking=bias)
    for i in range(cfg["depth"]):
        out[f"blocks.{i}.attn.zero_k_bias"] = torch.zeros(cfg["embed_dim"])
    return out


# ---------------------------------------------------------------------------------------------
# A small byte-level BPE tokenizer.json shaped like Qwen2's


def byte_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by ByteLevel pre-tokenizers."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# Qwen2's split pattern with \p{L} / \p{N} narrowed to ASCII letters / digits, so that Python's
# `re` (tests) and the JavaScript tokenizer split identically.
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]| ?[^\sA-Za-z0-9]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def train_bpe(texts: Sequence[str], merges_wanted: int) -> List[Tuple[str, str]]:
    """Greedy BPE merges (most frequent adjacent pair, ties broken by the pair itself)."""
    to_char = byte_to_unicode()
    words = Counter()
    for text in texts:
        for piece in re.findall(SPLIT_PATTERN, text):
            words[tuple(to_char[b] for b in piece.encode("utf-8"))] += 1
    merges = []
    for _ in range(merges_wanted):
        pairs = Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda item: (item[1], item[0]))[0]
        merges.append(best)
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def tokenizer_json(texts: Sequence[str], merges_wanted: int = 200) -> dict:
    to_char = byte_to_unicode()
    vocab = {to_char[b]: b for b in range(256)}
    merges = train_bpe(texts, merges_wanted)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    added = [{"id": len(vocab) + i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, tok in enumerate(SPECIAL_TOKENS)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


# ---------------------------------------------------------------------------------------------
# Writing the folders


def _write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


def build(out: str, seed: int = 0, tokenizer_ch: int = TOKENIZER_CONFIG["ch"]) -> Dict[str, "OrderedDict[str, torch.Tensor]"]:
    """Write the fake published folders under `out`; return the tensors written, by file role.

    `tokenizer_ch` is the tokenizer's base width (`ch`, a multiple of 32). The default, 32, makes
    layers of 32 and 64 channels: narrower than any published layer (128 and up), so the
    converted decoder shows whether it normalises in 32 groups at every width as HART does.

    Returned keys: 'ema' (EMA transformer weights, published names, no buffers), 'main'
    (the non-EMA weights), 'vae' (tokenizer weights without the `vae.` prefix), 'qwen'
    (Qwen2 weights with `model.` prefix, already rounded to bf16 as stored).
    """
    g = torch.Generator().manual_seed(seed)
    llm_dir, tok_dir, qwen_dir = (os.path.join(out, p) for p in ("hart/llm", "hart/tokenizer", "qwen"))
    for d in (llm_dir, tok_dir, qwen_dir):
        os.makedirs(d, exist_ok=True)

    if tokenizer_ch <= 0 or tokenizer_ch % 32:
        raise ValueError(f"tokenizer_ch {tokenizer_ch}: HART's GroupNorm(32) needs a multiple of 32")
    tok_config = {**TOKENIZER_CONFIG, "ch": tokenizer_ch}
    t_shapes = transformer_shapes(LLM_CONFIG, TOKENIZER_CONFIG["z_channels"], TOKENIZER_CONFIG["vocab_size"])
    ema = random_tensors(t_shapes, g)
    main = random_tensors(t_shapes, g)
    _write_json(os.path.join(llm_dir, "config.json"), LLM_CONFIG)
    save_file(OrderedDict((k, v.half()) for k, v in main.items()), os.path.join(llm_dir, "model.safetensors"),
              metadata={"format": "pt"})
    torch.save(OrderedDict(list(ema.items()) + list(hart_buffers(LLM_CONFIG).items())),
               os.path.join(llm_dir, "ema_model.bin"))

    vae = random_tensors(tokenizer_shapes(tok_config), g)
    stored = OrderedDict((f"vae.{k}", v) for k, v in vae.items())
    stored["vae.quantize.ema_vocab_hit_SV"] = torch.rand(len(TOKENIZER_CONFIG["v_patch_nums"]),
                                                          TOKENIZER_CONFIG["vocab_size"], generator=g)
    for k, v in random_tensors(discriminator_shapes(), g).items():
        stored[f"disc.{k}"] = v
    stored["disc.main.3.num_batches_tracked"] = torch.tensor(7)
    _write_json(os.path.join(tok_dir, "config.json"), tok_config)
    save_file(stored, os.path.join(tok_dir, "model.safetensors"), metadata={"format": "pt"})

    qwen = OrderedDict((k, v.bfloat16()) for k, v in random_tensors(qwen2_shapes(QWEN_CONFIG), g).items())
    _write_json(os.path.join(qwen_dir, "config.json"), QWEN_CONFIG)
    save_file(qwen, os.path.join(qwen_dir, "model.safetensors"), metadata={"format": "pt"})
    tools = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prompt_path = os.path.join(tools, "hart", "data", "hart_system_prompt.txt")
    with open(prompt_path, encoding="utf-8") as f:
        corpus = [f.read(), "a red circle on a blue background", "a small cat sleeping on a warm windowsill"]
    tok = tokenizer_json(corpus)
    if len(tok["model"]["vocab"]) + len(SPECIAL_TOKENS) > QWEN_CONFIG["vocab_size"]:
        raise AssertionError("the fake tokenizer outgrew the fake Qwen2 vocabulary")
    _write_json(os.path.join(qwen_dir, "tokenizer.json"), tok)
    _write_json(os.path.join(qwen_dir, "tokenizer_config.json"), {
        "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 32768, "padding_side": "right",
        "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>", "bos_token": None, "unk_token": None,
        "errors": "replace", "split_special_tokens": False,
    })
    return {"ema": ema, "main": main, "vae": vae, "qwen": qwen}


def main() -> None:
    parser = argparse.ArgumentParser(prog="tools/py convert.fake_published", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to create (hart/ and qwen/ go inside)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer-ch", type=int, default=TOKENIZER_CONFIG["ch"],
                        help="the tokenizer's base width, a multiple of 32 (default %(default)s: layers of 32 and 64 channels)")
    args = parser.parse_args()
    build(args.out, args.seed, args.tokenizer_ch)
    print(f"wrote {os.path.join(args.out, 'hart')} and {os.path.join(args.out, 'qwen')}")


if __name__ == "__main__":
    main()
