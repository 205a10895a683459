"""Train the small shapes-world HART generator (transformer, text encoder, residual diffusion head) on this CPU.

    /usr/bin/python3 tools/train_generator.py --tokenizer runs/tokenizer/tokenizer.pt --out runs/generator --minutes 70

The tokenizer is frozen. Its multi-scale token maps and last-scale residuals of the shapes cache
are computed once (tools/encode_dataset.py → <out>/encoded.npz). Then, teacher-forced (hart.md §9):
  - the input of scale k ≥ 1 is word_embed(Down_area(f_hat after k scales)) + level embedding,
    the context is the small text encoder's output, zeroed with probability --cond-drop (CFG);
  - cross-entropy over the tokens of every scale, in one block-causal pass;
  - the diffusion loss on a random subset of the last scale's tokens, conditioned on
    z = decoder_norm(hidden_last + word_embed(E[idx_last])), target = the residual (÷0.6 inside
    DiffLoss.loss), --diff-mul noise draws per token.
    Simplification: idx_last is the ground-truth token; HART uses the model's own sample.
  - optional, not HART's: self-correcting inputs (--self-correct, self_correction.py) and a
    margin between each relation image's likelihood under its caption and under a binding
    negative (--binding-weight, binding_negatives.py).
bf16 autocast (AMX), fp32 norms and residual stream, AdamW with warm-up + cosine over the
wall-clock budget, EMA of the weights (the exported model is the EMA).

Files in --out: log.txt (progress), checkpoint.pt (resumable: weights, EMA, optimizer, step,
elapsed time; written every --checkpoint-minutes, a rerun resumes from it), snap-XXXmin.pt
(EMA model every --snapshot-minutes, for evaluate.py's learning curve) and model.pt (the final
EMA model). The model files are HartModel.checkpoint() dicts plus 'step' and 'elapsed_s'.
"""
import argparse
import copy
import dataclasses
import math
import os
import time
from typing import List, Tuple

import numpy as np

# Threads sleep instead of spinning while they wait: on this shared 2-core box spinning threads
# steal the cores other jobs (and our own second thread) need. Read when torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import torch.nn as nn
import torch.nn.functional as F

from lab import REPO
from lab.data import encode_images, load_or_encode, load_or_mark_objects, object_tokens
from lab.shapes.dataset import TRAINING_IMAGES, render_if_missing
from hart.config import HartConfig, get_config
from hart.model import HartModel
from hart.sampler import encode_prompts
from lab.train_utils import (ProgressLog, Stopwatch, autocast_bf16, cosine_lr, load_checkpoint, resolve_device,
                             rng_state, save_checkpoint, set_lr, set_rng_state, setup_cpu)
from hart.diffusion import LayerNormNoAffine, ResBlock as DiffusionResBlock
from hart.text_encoder import TextBlock
from hart.rope import apply_rope
from hart.saved import load_saved
from hart.transformer import Block, RMSNorm
from hart.vae import HybridTokenizer, tokenizer_blob, tokenizer_configs
from lab.generator.self_correction import self_correct
from lab.generator.binding_negatives import KINDS, margin_loss, negative_caption


def binding_kinds(text: str) -> tuple:
    """'shapes,count' → ('shapes', 'count'), kinds checked (binding_negatives.KINDS)."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds or any(k not in KINDS for k in kinds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of {', '.join(KINDS)}")
    return kinds


def form_weights(text: str) -> dict:
    """'relation=2,count=1.5' → {'relation': 2.0, 'count': 1.5}, forms checked."""
    from lab.shapes.captions import FORMS
    weights = {}
    for part in filter(None, text.split(",")):
        form, _, value = part.partition("=")
        if form not in FORMS or not value:
            raise argparse.ArgumentTypeError(f"{part!r}: expected FORM=WEIGHT with FORM one of {', '.join(FORMS)}")
        if float(value) < 0:
            raise argparse.ArgumentTypeError(f"{part!r}: a weight cannot be negative")
        weights[form] = float(value)
    return weights


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", help="tokenizer.pt written by train_tokenizer.py, or a model file whose "
                                        "tokenizer to use (a resumed run may omit it)")
    ap.add_argument("--resume-from", help="continue from this model file when --out has no checkpoint "
                                          "(e.g. checkpoints/hart-shapes-128.pt)")
    ap.add_argument("--out", default="runs/generator")
    ap.add_argument("--minutes", type=float, default=70.0, help="training time (encoding not counted)")
    ap.add_argument("--config", default="shapes-128", help="base config; the tokenizer's vae/quantizer replace its own")
    ap.add_argument("--data", default=os.path.join(REPO, "runs", "shapes-20k"), help="shapes .npy cache folder")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    ap.add_argument("--images", type=int, default=TRAINING_IMAGES,
                    help="images to render into --data when it is missing")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes that render --data and mark its object tokens (a GPU machine's cores)")
    # Model size (a fresh run only; a resumed run keeps the config stored in its checkpoint).
    ap.add_argument("--width", type=int, default=192)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--text-width", type=int, default=128)
    ap.add_argument("--text-depth", type=int, default=2)
    ap.add_argument("--text-heads", type=int, default=2)
    ap.add_argument("--word-skip", action=argparse.BooleanOptionalAction, default=True,
                    help="text encoder adds each slot's own word embedding to its output (a fresh run only)")
    ap.add_argument("--attention-scale", type=float, default=0.25,
                    help="attention logits q·k·s/√hd (HART: 0.25); a fresh run only, a resumed run keeps its own")
    ap.add_argument("--diff-width", type=int, default=192)
    ap.add_argument("--diff-depth", type=int, default=3)
    # Sampling defaults written into the model (and the package manifest).
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--top-p", type=float, default=0.0)
    ap.add_argument("--guided-scales", type=int, default=6,
                    help="guidance on scales k < N only (0: all, HART); the shapes model draws cleaner shapes at 6")
    # Optimisation.
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--warmup", type=float, default=0.05, help="share of the budget for linear warm-up")
    ap.add_argument("--lr-floor", type=float, default=0.1,
                    help="where the cosine ends, as a share of --lr (a final cool-down wants it near 0)")
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--cond-drop", type=float, default=0.1, help="condition dropout (HART's cond_drop_rate)")
    ap.add_argument("--diff-mul", type=int, default=4, help="noise draws per token (HART's diffusion_batch_mul)")
    ap.add_argument("--diff-tokens", type=int, default=32, help="last-scale tokens per image for the diffusion loss")
    ap.add_argument("--diff-weight", type=float, default=1.0)
    ap.add_argument("--scale-weight-power", type=float, default=0.5,
                    help="cross-entropy weight of scale k's tokens ∝ (1/pn_k²)^power (0: plain token mean)")
    ap.add_argument("--object-weight", type=float, default=1.0,
                    help="cross-entropy weight of tokens over an object against background tokens (1: alike); "
                         "the background's texture is random, the objects are what the caption names")
    ap.add_argument("--form-weights", type=form_weights, default={},
                    help="sampling weight of caption forms, e.g. relation=2,count=2 (others 1)")
    ap.add_argument("--self-correct", type=float, default=0.0,
                    help="most share of tokens of scales 0..K-2 replaced by wrong ones, with the later "
                         "scales' targets repairing them (self_correction.py; 0: plain teacher forcing)")
    ap.add_argument("--binding-weight", type=float, default=0.0,
                    help="weight of the binding margin: each relation (or count) image's tokens of the first "
                         "--binding-scales scales must be --binding-margin nats per token less likely under its "
                         "caption changed by one of --binding-kinds (binding_negatives.py; 0: off)")
    ap.add_argument("--binding-margin", type=float, default=0.1)
    ap.add_argument("--binding-kinds", type=binding_kinds, default=("flip", "colours"),
                    help="which negatives: flip, colours, shapes (relation captions), count (count captions), "
                         "extra (relation and count captions: the first object alone)")
    ap.add_argument("--binding-scales", type=int, default=6,
                    help="scales where the layout is decided (later ones see it in their inputs)")
    ap.add_argument("--last-keep", type=int, default=64,
                    help="last-scale tokens kept in the training sequence (0: all; fewer is faster)")
    ap.add_argument("--restart-clock", action="store_true",
                    help="with --resume-from: the schedule (warm-up, cosine, snapshots) counts from this run's "
                         "start, not from the model file's training time (a new stage, e.g. on a GPU)")
    ap.add_argument("--stop-at", type=float, default=0.0,
                    help="Unix time by which training must have ended: the budget shrinks to fit it once the "
                         "data is ready, and the schedule follows the shrunk budget (a lent machine's limit)")
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0)
    ap.add_argument("--snapshot-minutes", type=float, default=10.0)
    ap.add_argument("--log-seconds", type=float, default=60.0)
    ap.add_argument("--held-out", type=int, default=32, help="held-out images for the validation loss")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto",
                    help="cpu, cuda or auto (the GPU when torch sees one); checkpoints load on either")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp32", action="store_true", help="disable bf16 autocast")
    args = ap.parse_args(argv)
    if not 0.0 <= args.self_correct < 1.0:
        ap.error(f"--self-correct {args.self_correct}: expected a share of tokens in [0, 1)")
    if not 0.0 <= args.lr_floor <= 1.0:
        ap.error(f"--lr-floor {args.lr_floor}: expected a share of --lr between 0 and 1")
    if args.binding_weight < 0 or args.binding_margin < 0:
        ap.error("--binding-weight and --binding-margin cannot be negative")
    if args.binding_scales < 1:
        ap.error(f"--binding-scales {args.binding_scales}: expected at least 1")
    return args


# ----------------------------------------------------------------------------------------
# Model


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


# ----------------------------------------------------------------------------------------
# Data


class EncodedData:
    """Token maps, residuals and tokenised captions of the encoded shapes cache, in memory, and
    (when given) which tokens cover an object."""

    def __init__(self, config: HartConfig, encoded: dict, device: torch.device = torch.device("cpu")):
        self.device = device
        self.captions = list(encoded["captions"])
        self.indices = torch.from_numpy(encoded["indices"].astype(np.int64))
        self.objects = torch.from_numpy(np.asarray(encoded["objects"])) if "objects" in encoded else None
        self.residual = encoded["residual"]                       # float16 [N, h², Cv], cast per batch
        ids, mask, n_valid = encode_prompts(config, encoded["captions"])
        self.ids = torch.from_numpy(ids.astype(np.int64))
        self.mask = torch.from_numpy(mask.astype(np.int64))
        self.n_valid = np.array(n_valid)
        self.n = self.indices.shape[0]

    def batch(self, rows: np.ndarray) -> dict:
        rows = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        residual = torch.from_numpy(self.residual[rows.numpy()].astype(np.float32))
        out = {"indices": self.indices[rows].to(self.device), "residual": residual.to(self.device),
               "ids": self.ids[rows].to(self.device), "mask": self.mask[rows].to(self.device),
               "n_valid": self.n_valid[rows.numpy()], "captions": [self.captions[r] for r in rows.tolist()]}
        if self.objects is not None:
            out["objects"] = self.objects[rows].to(self.device)
        return out

    def sampling_weights(self, weights: dict):
        """Per-image probabilities that give each caption form `weights[form]` (default 1) times
        its share; None when every form keeps its share."""
        if not weights or all(w == 1.0 for w in weights.values()):
            return None
        from lab.shapes.captions import parse_caption
        p = np.array([weights.get(parse_caption(c).form, 1.0) for c in self.captions])
        return p / p.sum()


def held_out_data(config: HartConfig, tokenizer: HybridTokenizer, n: int) -> dict:
    """A fixed held-out batch (images never in the training stream), encoded like the training
    data, on the tokenizer's device."""
    from lab.shapes.dataset import held_out_example
    examples = [held_out_example(0, i, config.image_size) for i in range(n)]
    images = np.stack([e[0] for e in examples])
    indices, residual = encode_images(tokenizer, images)
    ids, mask, n_valid = encode_prompts(config, [e[1] for e in examples])
    objects = torch.from_numpy(object_tokens(images, config.patch_nums))
    return {"indices": indices, "residual": residual, "ids": torch.from_numpy(ids.astype(np.int64)).to(indices.device),
            "mask": torch.from_numpy(mask.astype(np.int64)).to(indices.device), "n_valid": np.array(n_valid),
            "objects": objects.to(indices.device), "captions": [e[1] for e in examples]}


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


# ----------------------------------------------------------------------------------------
# Training forward


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


# ----------------------------------------------------------------------------------------
# Loss


def scale_weights(config: HartConfig, power: float, last_present: int) -> torch.Tensor:
    """Per-token cross-entropy weights [Σ pn²] summing to 1: scale k's tokens get ∝ (1/pn_k²)^power.

    power 0 is the plain token average (VAR, HART); larger powers move weight to the coarse
    scales, where layout, colours and counts are decided and which are only ~13% of the tokens.
    """
    counts = [pn * pn for pn in config.patch_nums]
    per_token = [(1.0 / n) ** power for n in counts]
    counts[-1] = last_present
    weights = torch.cat([torch.full((n,), w) for n, w in zip(counts, per_token)])
    return weights / weights.sum()


def object_target_mask(objects: torch.Tensor, last_scale_tokens: int, last_order) -> torch.Tensor:
    """float [B, tokens in the sequence]: 1 for tokens over an object, 0 for background, laid out
    like the training targets (the last scale thinned to `last_order` when given)."""
    last = objects[:, -last_scale_tokens:]
    if last_order is not None:
        last = last.gather(1, last_order)
    return torch.cat([objects[:, :-last_scale_tokens], last], dim=1).float()


def coarse_token_count(config: HartConfig, last_scale: int = 6) -> int:
    """Tokens of scales 0..last_scale-1: where layout, colours and counts are decided."""
    return sum(pn * pn for pn in config.patch_nums[:last_scale])


def negative_rows(batch: dict, dropped, generator: torch.Generator,
                  kinds: Tuple[str, ...]) -> Tuple[List[int], List[str]]:
    """The rows that get a binding negative (captions whose condition was kept and to which one of
    these kinds applies) and their negative captions, one of the applicable kinds at random."""
    rows, negatives = [], []
    for i, caption in enumerate(batch.get("captions", [])):
        if dropped is not None and bool(dropped[i]):
            continue
        candidates = [n for n in (negative_caption(caption, kind) for kind in kinds) if n is not None]
        if candidates:
            rows.append(i)
            negatives.append(candidates[int(torch.randint(len(candidates), (1,), generator=generator))])
    return rows, negatives


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


def losses(model: HartModel, batch: dict, args, rope: RopeCache, generator: torch.Generator = None,
           train: bool = True) -> dict:
    """Cross-entropy over all scales' tokens and the residual diffusion loss for one batch (and,
    with --binding-weight, the binding margin of its relation images; held out too, as `gap`)."""
    config, tr = model.config, model.transformer
    quantizer = model.tokenizer.quantize
    indices, residual = batch["indices"], batch["residual"]
    b, device = indices.shape[0], indices.device
    side2, cv = config.latent_side ** 2, config.latent_channels
    n_valid = np.asarray(batch["n_valid"]).copy()
    keep_fp32_residual_stream(model)
    shown = indices
    if train and args.self_correct > 0:
        # Inputs built with some wrong tokens; targets are the tokens that repair them.
        shown, indices, residual = self_correct(quantizer, indices, residual, args.self_correct, generator)
    inputs = teacher_inputs(quantizer, shown)
    last_order = None
    if train and 0 < args.last_keep < side2:
        # MAR-style: a random subset of the last scale's tokens (only the last scale can be
        # thinned: no later scale reads its keys).
        last_order = torch.rand(b, side2, generator=generator).argsort(dim=1)[:, :args.last_keep].to(device)
    with autocast_bf16(not args.fp32, device.type):
        text = model.text_encoder(batch["ids"], batch["mask"])[:, len(config.text_encoder.prefix_ids):]
        drop = None
        if train and args.cond_drop > 0:
            drop = torch.rand(b, generator=generator) < args.cond_drop
            # HART's null condition is all-zero text; its rows get the unconditional RoPE
            # positions the sampler gives them (text positions 0, image offset 0), i.e. n = 1.
            text = text * (~drop).to(device=device, dtype=text.dtype)[:, None, None]
            n_valid[drop.numpy()] = 1
        logits, hidden_last = training_forward(tr, text, n_valid.tolist(), inputs, rope, last_order)
        last_idx = indices[:, -side2:]
        if last_order is not None:
            last_idx = last_idx.gather(1, last_order)
            residual = residual.gather(1, last_order[:, :, None].expand(-1, -1, cv))
        targets = torch.cat([indices[:, :-side2], last_idx], dim=1)
        ce_all = F.cross_entropy(logits.float().reshape(-1, config.vocab_size), targets.reshape(-1),
                                 reduction="none").reshape(b, -1)
        ce_negative = None
        if args.binding_weight > 0:
            rows, negatives = negative_rows(batch, drop, generator, args.binding_kinds)
            if rows:
                rows = torch.tensor(rows, device=device)
                ce_negative = caption_ce(model, negatives, inputs[rows], targets[rows], rope, args.binding_scales)

        present = last_idx.shape[1]
        keep = min(args.diff_tokens, present) if args.diff_tokens > 0 else present
        # Each image keeps a random subset of its last-scale tokens for the diffusion loss.
        order = torch.rand(b, present, generator=generator).argsort(dim=1)[:, :keep].to(device)
        hidden_sel = hidden_last.gather(1, order[:, :, None].expand(-1, -1, hidden_last.shape[-1]))
        tokens_sel = quantizer.embedding.weight.detach()[last_idx.gather(1, order)]
        z = tr.decoder_norm(hidden_sel.float() + tr.word_embed(tokens_sel).float()).reshape(-1, config.width)
        target = residual.gather(1, order[:, :, None].expand(-1, -1, cv)).reshape(-1, cv)
        mul = args.diff_mul
        diff = tr.diffloss.loss(target.repeat(mul, 1), z.repeat(mul, 1))
    coarse = coarse_token_count(config)
    ce = ce_all.mean()
    weights = scale_weights(config, args.scale_weight_power, present).to(device)[None]
    out = {"ce": ce, "ce_coarse": ce_all[:, :coarse].mean(), "ce_last": ce_all[:, -present:].mean(), "diff": diff}
    if "objects" in batch:
        on_object = object_target_mask(batch["objects"], side2, last_order)
        # The tokens the caption is about: the background's random texture does not hide them.
        out["ce_object"] = (ce_all * on_object).sum() / on_object.sum().clamp(min=1.0)
        if args.object_weight != 1.0:
            weights = weights * (1.0 + (args.object_weight - 1.0) * on_object)
            weights = weights / weights.sum(1, keepdim=True)   # each image's loss keeps its size
    out["loss"] = (ce_all * weights).sum(1).mean() + args.diff_weight * diff
    if ce_negative is not None:
        # Mean gap over the scales that decide the layout: the finer ones see it in their inputs.
        coarse_ce = ce_all[rows, :ce_negative.shape[1]]
        hinge, out["gap"] = margin_loss(coarse_ce, ce_negative, torch.ones_like(coarse_ce[:1]), args.binding_margin)
        out["loss"] = out["loss"] + args.binding_weight * hinge
    return out


# ----------------------------------------------------------------------------------------
# Checkpoints


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


# ----------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    setup_cpu(args.threads, args.seed)
    os.makedirs(args.out, exist_ok=True)
    log = ProgressLog(os.path.join(args.out, "log.txt"))
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    final_path = os.path.join(args.out, "model.pt")

    ckpt = load_checkpoint(ckpt_path)
    new_stage = ckpt is None and bool(args.resume_from) and args.restart_clock
    if ckpt is None and args.resume_from:
        # E.g. the committed checkpoints/hart-shapes-128.pt: a model file (EMA weights) to continue from.
        ckpt = load_saved(args.resume_from)
        log.write(f"continuing from {args.resume_from}")
    if args.tokenizer:
        saved_tokenizer = tokenizer_blob(load_saved(args.tokenizer))
    elif ckpt is not None:
        saved_tokenizer = tokenizer_blob(ckpt)
    else:
        raise SystemExit("--tokenizer is needed for a fresh run")
    config = HartConfig.from_dict(ckpt["config"]) if ckpt is not None else build_config(args, saved_tokenizer)
    # Sampling defaults are not learned: they always come from the command line.
    config.sampling = dataclasses.replace(config.sampling, cfg=args.cfg, top_k=args.top_k, top_p=args.top_p,
                                          guided_scales=args.guided_scales)
    model = HartModel.build(config)
    model.tokenizer.load_state_dict(saved_tokenizer["state_dict"])
    model.tokenizer.eval().requires_grad_(False)
    if ckpt is None:
        init_weights(model)
    else:
        model.transformer.load_state_dict(ckpt["transformer"])
        model.text_encoder.load_state_dict(ckpt["text_encoder"])
    keep_fp32_residual_stream(model)
    device = resolve_device(args.device)
    model.to(device)   # weights are made (or loaded) on the CPU first, so a run starts alike anywhere

    render_if_missing(args.data, n=args.images, size=config.image_size, log=log.write, workers=args.workers)
    encoded = load_or_encode(model.tokenizer, args.data, os.path.join(args.out, "encoded.npz"), args.limit,
                             log=log.write, batch=512 if device.type == "cuda" else 32)
    if args.object_weight != 1.0:
        encoded["objects"] = load_or_mark_objects(args.data, os.path.join(args.out, "objects.npy"),
                                                  config.patch_nums, len(encoded["captions"]), log=log.write,
                                                  workers=args.workers)
    data = EncodedData(config, encoded, device)
    form_p = data.sampling_weights(args.form_weights)
    held = held_out_data(config, model.tokenizer, args.held_out)

    ema = EMA([model.transformer, model.text_encoder], args.ema)
    optimizer = make_optimizer(model, args)
    step, snapshots_done = 0, 0
    if ckpt is not None:
        if ckpt.get("ema") is not None:
            ema.load(ckpt["ema"])   # else the EMA starts at the loaded (already averaged) weights
        if ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        else:
            log.write("checkpoint has no optimizer state: AdamW starts afresh")
        step = ckpt["step"]
        snapshots_done = 0 if new_stage else ckpt.get(
            "snapshots", int(ckpt["elapsed_s"] // max(args.snapshot_minutes * 60, 1e-9)))
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])
    clock = Stopwatch(ckpt["elapsed_s"] if ckpt is not None and not new_stage else 0.0)
    total_s = args.minutes * 60.0
    if new_stage:
        log.write(f"new stage: the schedule counts from 0 (the model file had {ckpt['elapsed_s'] / 60:.1f} min)")
    if args.stop_at:
        left = args.stop_at - time.time() - 30.0   # the final save and report
        if clock.elapsed() + left < total_s:
            total_s = max(clock.elapsed() + left, clock.elapsed() + 1.0)
            log.write(f"--stop-at: budget shrunk to {total_s / 60:.2f} min")
    generator = torch.Generator().manual_seed(args.seed * 1000003 + step)
    rope = RopeCache(model.transformer)
    data_rng = np.random.default_rng([args.seed, step])   # data order continues on resume

    tokens_per_image = sum(pn * pn for pn in config.patch_nums)
    if ckpt is None:
        log.write(f"start: {trainable_parameters(model) / 1e6:.2f}M trainable parameters (transformer "
                  f"{sum(p.numel() for n, p in model.transformer.named_parameters() if not n.startswith('diffloss')) / 1e6:.2f}M, "
                  f"diffusion head {sum(p.numel() for p in model.transformer.diffloss.parameters()) / 1e6:.2f}M, "
                  f"text encoder {sum(p.numel() for p in model.text_encoder.parameters()) / 1e6:.2f}M); "
                  f"width {config.width} depth {config.depth} heads {config.heads}, {data.n} images, "
                  f"{tokens_per_image} tokens/image, batch {args.batch}, lr {args.lr} (floor {args.lr_floor}), "
                  f"minutes {args.minutes}, self-correct {args.self_correct}, device {device}")
    else:
        log.write(f"resume at step {step}, {clock.elapsed() / 60:.1f} min trained, budget {args.minutes} min, "
                  f"lr {args.lr} (floor {args.lr_floor}), object weight {args.object_weight}, "
                  f"form weights {args.form_weights or 'none'}, self-correct {args.self_correct}, "
                  f"binding weight {args.binding_weight} margin {args.binding_margin} "
                  f"kinds {','.join(args.binding_kinds)}, device {device}")

    def save_state():
        save_checkpoint(ckpt_path, {
            "config": config.to_dict(), "transformer": model.transformer.state_dict(),
            "text_encoder": model.text_encoder.state_dict(), "tokenizer": model.tokenizer.state_dict(),
            "ema": ema.state(), "optimizer": optimizer.state_dict(), "step": step, "elapsed_s": clock.elapsed(),
            "snapshots": snapshots_done, "rng": rng_state(), "args": vars(args)})

    @torch.no_grad()
    def validate() -> dict:
        averaged = ema_model(model, ema)   # deepcopy keeps the fp32 hooks
        return {k: float(v) for k, v in losses(averaged, held, args, rope, torch.Generator().manual_seed(0),
                                               False).items()}

    window = {"ce": 0.0, "ce_coarse": 0.0, "ce_last": 0.0, "diff": 0.0, "n": 0, "gap": 0.0, "gaps": 0, "t": time.time()}

    def report(tag="progress"):
        n = max(window["n"], 1)
        seconds = max(time.time() - window["t"], 1e-6)
        val = validate()
        # The binding margin's gap (nats per token), where the window's batches and the held-out
        # batch had relation images.
        gap = f" gap {window['gap'] / window['gaps']:.4f}" if window["gaps"] else ""
        val_gap = f" gap {val['gap']:.4f}" if "gap" in val else ""
        log.write(f"{tag} step {step} elapsed {clock.elapsed() / 60:.1f} min lr {optimizer.param_groups[0]['lr']:.2e} "
                  f"ce {window['ce'] / n:.4f} ce_coarse {window['ce_coarse'] / n:.4f} ce_last {window['ce_last'] / n:.4f} "
                  f"diff {window['diff'] / n:.4f}{gap} | held-out (EMA) ce {val['ce']:.4f} ce_coarse {val['ce_coarse']:.4f} "
                  f"ce_object {val['ce_object']:.4f} diff {val['diff']:.4f}{val_gap} | {window['n'] * args.batch / seconds:.2f} img/s "
                  f"{window['n'] * args.batch * tokens_per_image / seconds:.0f} tok/s")
        window.update(ce=0.0, ce_coarse=0.0, ce_last=0.0, diff=0.0, n=0, gap=0.0, gaps=0, t=time.time())

    last_log = last_ckpt = time.time()
    model.transformer.train()
    model.text_encoder.train()
    while clock.elapsed() < total_s and not (args.max_steps and step >= args.max_steps):
        set_lr(optimizer, cosine_lr(args.lr, clock.elapsed() / total_s, warmup=args.warmup, floor=args.lr_floor))
        rows = data_rng.choice(data.n, size=args.batch, replace=False, p=form_p)
        out = losses(model, data.batch(rows), args, rope, generator)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        step += 1
        ema.update(step)
        for key in ("ce", "ce_coarse", "ce_last", "diff"):
            window[key] += float(out[key].detach())
        window["n"] += 1
        if "gap" in out:
            window["gap"] += float(out["gap"].detach())
            window["gaps"] += 1

        now = time.time()
        if now - last_log >= args.log_seconds or step == 5:
            report()
            last_log = time.time()
        if now - last_ckpt >= args.checkpoint_minutes * 60:
            save_state()
            last_ckpt = time.time()
        if args.snapshot_minutes > 0 and clock.elapsed() >= (snapshots_done + 1) * args.snapshot_minutes * 60:
            snapshots_done += 1
            path = os.path.join(args.out, f"snap-{int(round(clock.elapsed() / 60)):03d}min.pt")
            save_model(path, model, ema, step, clock.elapsed())
            log.write(f"snapshot {path}")

    report("final:")
    save_state()
    save_model(final_path, model, ema, step, clock.elapsed())
    log.write(f"saved {final_path} (EMA weights, step {step}, {clock.elapsed() / 60:.1f} min)")


if __name__ == "__main__":
    main()
