"""Reading the published HART and Qwen2 files: weights, config.json values, key mapping.

Published layout (docs/hart.md §1): `<hart>/llm/{config.json, ema_model.bin, ...}`,
`<hart>/tokenizer/{config.json, weights}` and a Qwen2 folder
`{config.json, model.safetensors | sharded, tokenizer.json, tokenizer_config.json}`.

Every value our modules need is read from the config files; a field that is missing, or a
flag that selects a code path we do not implement, stops the conversion with a message that
names it. Every weight is mapped by name; missing keys, unexpected keys and shape mismatches
stop it too (see `match_state`).
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import torch

from hart.config import CONFIGS, HartConfig, SamplingDefaults, TextEncoderConfig, hart_sampling
from hart.diffusion import DiffusionConfig
from hart.quantizer import QuantizerConfig
from hart.qwen2 import Qwen2Config
from .safetensors import SafetensorsFile
from hart.vae import VaeConfig


class CheckpointError(ValueError):
    """A published file that does not fit what the converter expects, explained in words."""


# ---------------------------------------------------------------------------------------------
# Files


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"missing file {path}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def find_weights(folder: str, preferred: Sequence[str] = ()) -> str:
    """The weight file of a published folder: the first of `preferred`, then HF's usual names."""
    for name in tuple(preferred) + WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    # Published folders sometimes name their single weight file differently.
    others = sorted(n for n in os.listdir(folder) if n.endswith((".safetensors", ".bin", ".pt", ".pth"))) \
        if os.path.isdir(folder) else []
    if len(others) == 1:
        return os.path.join(folder, others[0])
    raise CheckpointError(f"no weights in {folder}: looked for {', '.join(tuple(preferred) + WEIGHT_FILES)}")


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Tensors of a `.safetensors`, a PyTorch pickle (`.bin`/`.pt`) or a sharded `*.index.json`."""
    if path.endswith(".index.json"):
        index = read_json(path)
        shards = sorted(set(index.get("weight_map", {}).values()))
        if not shards:
            raise CheckpointError(f"{path}: weight_map is empty")
        state: Dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(read_state_dict(os.path.join(os.path.dirname(path), shard)))
        return state
    if path.endswith(".safetensors"):
        return dict(SafetensorsFile(path).items())
    try:
        # weights_only: a published checkpoint is a dict of tensors; refuse arbitrary pickled code.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"cannot read {path} as a PyTorch state dict: {err}") from None
    return _unwrap_state(obj, path)


def _unwrap_state(obj, path: str) -> Dict[str, torch.Tensor]:
    # Training scripts often save {"model": state_dict} or {"state_dict": ...}.
    for _ in range(2):
        if isinstance(obj, Mapping) and obj and not any(torch.is_tensor(v) for v in obj.values()):
            inner = [v for k, v in obj.items() if k in ("state_dict", "model", "module", "ema") and isinstance(v, Mapping)]
            if len(inner) == 1:
                obj = inner[0]
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors")
    return dict(obj)


# ---------------------------------------------------------------------------------------------
# Key mapping and validation


def match_state(expected: Mapping[str, torch.Size], state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise CheckpointError unless `state` has exactly the keys and shapes of `expected`."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
             for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch: {_listing(wrong)}")
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))


def _listing(items: List[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


# HART's stored buffers (docs/hart.md §12.2): derived from the config, not weights.
_TRANSFORMER_BUFFERS = re.compile(r"^(lvl_1L|attn_bias_for_masking|blocks\.\d+\.attn\.zero_k_bias)$")


def transformer_state(raw: Mapping[str, torch.Tensor], config: HartConfig) -> Dict[str, torch.Tensor]:
    """`llm/ema_model.bin` -> our HartTransformer's state dict (float32), buffers dropped.

    The dropped `lvl_1L` still tells us the training sequence length, T + Σpn² − 1, which
    checks context_token and patch_nums against the weights.
    """
    if "lvl_1L" in raw:
        expected_len = config.context_tokens + sum(p * p for p in config.patch_nums) - 1
        got = raw["lvl_1L"].numel()
        if got != expected_len:
            raise CheckpointError(f"llm weights: lvl_1L has {got} positions but config.json's context_token "
                                  f"and patch_nums give {expected_len}")
    return {k: v.float() for k, v in raw.items() if not _TRANSFORMER_BUFFERS.match(k)}


def tokenizer_state(raw: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """`tokenizer/` weights -> our HybridTokenizer's state dict.

    The folder holds HARTAutoEncoderWithDisc: inference weights under `vae.`, a discriminator
    under `disc.` (dropped), the codebook-usage statistic `quantize.ema_vocab_hit_SV`
    (dropped) and, for a double-decoder tokenizer, `decoder2`/`post_quant_conv2` that HART's
    inference never uses (dropped). A file without the `vae.` prefix is taken as is.
    """
    prefixed = any(k.startswith("vae.") for k in raw)
    out = {}
    for key, value in raw.items():
        if prefixed:
            if not key.startswith("vae."):
                if key.startswith("disc."):
                    continue
                out[key] = value  # kept, so match_state reports it as unexpected
                continue
            key = key[len("vae."):]
        if key == "quantize.ema_vocab_hit_SV" or key.split(".")[0] in ("decoder2", "post_quant_conv2"):
            continue
        out[key] = value.float()
    return out


def qwen2_state(raw: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Qwen2 weights (`model.*` as saved by Qwen2ForCausalLM, or bare as by Qwen2Model) -> ours.

    The LM head is dropped (HART only reads hidden states), and so are the rotary `inv_freq`
    buffers some older checkpoints carry.
    """
    out = {}
    for key, value in raw.items():
        if key == "lm_head.weight" or key.endswith("rotary_emb.inv_freq"):
            continue
        if key.startswith("model."):
            key = key[len("model."):]
        out[key] = value.float()
    return out


def load_checked(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    expected = {k: v.shape for k, v in module.state_dict().items()}
    match_state(expected, state, what)
    module.load_state_dict(dict(state), strict=True)


# ---------------------------------------------------------------------------------------------
# config.json -> HartConfig


def _require(config: Mapping, fields: Iterable[str], what: str) -> None:
    missing = [f for f in fields if f not in config]
    if missing:
        raise CheckpointError(f"{what} lacks {', '.join(missing)}")


def _expect(config: Mapping, field: str, allowed, what: str) -> None:
    """A flag that selects a code path: only the published model's value is implemented."""
    allowed = allowed if isinstance(allowed, tuple) else (allowed,)
    if config[field] not in allowed:
        raise CheckpointError(f"{what}: {field} = {config[field]!r} is not supported "
                              f"(the converter implements {' or '.join(repr(a) for a in allowed)})")


LLM_FIELDS = ("model_type", "depth", "embed_dim", "num_heads", "mlp_ratio", "norm_eps", "patch_nums",
              "context_token", "context_dim", "attn_type", "mlp_type", "disable_aln", "shared_aln",
              "use_timestep_embed", "use_context_norm", "attn_l2_norm", "use_cross_attn",
              "sep_aln_pooling_mode", "diff_width", "diff_depth", "num_sampling_steps", "sampler")
TOKENIZER_FIELDS = ("vocab_size", "z_channels", "ch", "ch_mult", "quant_resi", "share_quant_resi",
                    "quant_conv_ks", "using_znorm", "quantizer_type")


def text_encoder_config(qwen: Qwen2Config, prefix_ids: Sequence[int]) -> TextEncoderConfig:
    return TextEncoderConfig(kind="qwen2", vocab_size=qwen.vocab_size, width=qwen.hidden_size,
                             depth=qwen.num_hidden_layers, heads=qwen.num_attention_heads,
                             max_tokens=qwen.max_position_embeddings, norm_eps=qwen.rms_norm_eps,
                             prefix_ids=tuple(int(i) for i in prefix_ids))


def hart_config(llm: Mapping, tokenizer: Mapping, text: TextEncoderConfig,
                name: str = "hart-0.7b-1024px", sampling: Optional[SamplingDefaults] = None,
                description: Optional[str] = None, examples: Sequence[str] = ()) -> HartConfig:
    """Our HartConfig from `llm/config.json`, `tokenizer/config.json` and the text encoder."""
    what = "llm/config.json"
    _require(llm, LLM_FIELDS, what)
    _expect(llm, "model_type", "hart_transformer_t2i", what)
    _expect(llm, "attn_type", "llama", what)
    _expect(llm, "mlp_type", "llama", what)
    _expect(llm, "disable_aln", True, what)
    _expect(llm, "shared_aln", False, what)
    _expect(llm, "use_timestep_embed", True, what)
    _expect(llm, "use_context_norm", True, what)
    _expect(llm, "attn_l2_norm", False, what)
    _expect(llm, "use_cross_attn", False, what)
    _expect(llm, "sep_aln_pooling_mode", "max", what)
    _expect(llm, "sampler", "iddpm", what)
    # Our MLP width is HART's formula at ratio 4 (hidden 4096 for C 1536).
    _expect(llm, "mlp_ratio", (4, 4.0), what)
    if int(llm["embed_dim"]) % int(llm["num_heads"]):
        raise CheckpointError(f"{what}: embed_dim {llm['embed_dim']} is not a multiple of num_heads {llm['num_heads']}")
    if int(llm["context_dim"]) != text.width:
        raise CheckpointError(f"{what}: context_dim {llm['context_dim']} differs from the text encoder's "
                              f"hidden_size {text.width}")

    what_t = "tokenizer/config.json"
    _require(tokenizer, TOKENIZER_FIELDS, what_t)
    _expect(tokenizer, "quantizer_type", ("var_hybrid", "var"), what_t)
    _expect(tokenizer, "quant_conv_ks", 3, what_t)
    _expect(tokenizer, "using_znorm", False, what_t)
    if tokenizer.get("disable_quant_resi", False):
        raise CheckpointError(f"{what_t}: disable_quant_resi = true is not supported")
    if tokenizer.get("default_qresi_counts", 0) not in (0, tokenizer["share_quant_resi"]):
        raise CheckpointError(f"{what_t}: default_qresi_counts = {tokenizer['default_qresi_counts']} is not supported")

    patch_nums = tuple(int(p) for p in llm["patch_nums"])
    ch_mult = tuple(int(m) for m in tokenizer["ch_mult"])
    z = int(tokenizer["z_channels"])
    image_size = patch_nums[-1] * 2 ** (len(ch_mult) - 1)
    base = CONFIGS.get(name) or CONFIGS["hart-0.7b-1024px"]
    try:
        return HartConfig(
            name=name,
            image_size=image_size,
            quantizer=QuantizerConfig(vocab_size=int(tokenizer["vocab_size"]), channels=z, patch_nums=patch_nums,
                                      quant_resi=float(tokenizer["quant_resi"]),
                                      phi_count=int(tokenizer["share_quant_resi"])),
            # HART hard-codes num_res_blocks=2 (vq-f16 ddconfig) and GroupNorm(32) at every width
            # (basic_vae.py's Normalize); neither is a config field.
            vae=VaeConfig(image_size=image_size, ch=int(tokenizer["ch"]), ch_mult=ch_mult, num_res_blocks=2,
                          z_channels=z, attn_resolution_lowest=True, dropout=0.0, norm_groups=32),
            diffusion=DiffusionConfig(in_channels=z, width=int(llm["diff_width"]), depth=int(llm["diff_depth"]),
                                      cond_dim=int(llm["embed_dim"]), steps=int(llm["num_sampling_steps"])),
            text_encoder=text,
            width=int(llm["embed_dim"]), depth=int(llm["depth"]), heads=int(llm["num_heads"]),
            context_tokens=int(llm["context_token"]), context_dim=int(llm["context_dim"]),
            norm_eps=float(llm["norm_eps"]),
            # The official inference defaults, whatever the package is called.
            sampling=sampling or hart_sampling(),
            description=description if description is not None else base.description,
            examples=tuple(examples) or base.examples,
        )
    except ValueError as err:
        raise CheckpointError(f"the published configs do not form a consistent model: {err}") from None


def qwen2_config(folder: str) -> Qwen2Config:
    try:
        return Qwen2Config.from_hf(read_json(os.path.join(folder, "config.json")))
    except CheckpointError:
        raise
    except ValueError as err:
        raise CheckpointError(str(err)) from None


def pad_token_id(folder: str) -> int:
    """The pad token HART pads the prompt with: tokenizer_config.json's pad_token, looked up in tokenizer.json."""
    tokenizer = read_json(os.path.join(folder, "tokenizer.json"))
    ids = {t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", [])}
    vocab = (tokenizer.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, dict):
        ids = {**vocab, **ids}
    config_path = os.path.join(folder, "tokenizer_config.json")
    token = None
    if os.path.isfile(config_path):
        token = read_json(config_path).get("pad_token")
        if isinstance(token, dict):
            token = token.get("content")
    if token is None and tokenizer.get("padding"):
        return int(tokenizer["padding"]["pad_id"])
    if token is None:
        raise CheckpointError(f"{folder}: no pad_token in tokenizer_config.json and no padding in tokenizer.json")
    if token not in ids:
        raise CheckpointError(f"{folder}: pad_token {token!r} is not in tokenizer.json")
    return int(ids[token])
