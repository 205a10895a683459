"""The generator's training losses for one batch: cross-entropy over every scale's tokens
(weighted by scale and, optionally, towards object tokens), the residual diffusion loss, and the
optional binding margin (binding_negatives.py) and self-correcting inputs (self_correction.py).
"""
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from hart.config import HartConfig
from hart.model import HartModel
from lab.generator.binding_negatives import margin_loss, negative_caption
from lab.generator.forward import RopeCache, caption_ce, coarse_token_count, teacher_inputs, training_forward
from lab.generator.model import keep_fp32_residual_stream
from lab.generator.self_correction import self_correct
from lab.train_utils import autocast_bf16


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
