"""Train the small shapes-world HART generator (transformer, text encoder, residual diffusion head) on this CPU.

    tools/py lab.train_generator --tokenizer runs/tokenizer/tokenizer.pt --out runs/generator --minutes 70

The tokenizer is frozen. Its multi-scale token maps and last-scale residuals of the shapes cache
are computed once (lab/data.py → <out>/encoded.npz). Then, teacher-forced (docs/hart.md §13):
  - the input of scale k ≥ 1 is word_embed(Down_area(f_hat after k scales)) + level embedding,
    the context is the small text encoder's output, zeroed with probability --cond-drop (CFG);
  - cross-entropy over the tokens of every scale, in one block-causal pass;
  - the diffusion loss on a random subset of the last scale's tokens, conditioned on
    z = decoder_norm(hidden_last + word_embed(E[idx_last])), target = the residual (÷0.6 inside
    DiffLoss.loss), --diff-mul noise draws per token.
    Simplification: idx_last is the ground-truth token; HART uses the model's own sample.
  - optional, not HART's: self-correcting inputs (--self-correct, generator/self_correction.py) and a
    margin between each relation image's likelihood under its caption and under a binding
    negative (--binding-weight, generator/binding_negatives.py).
bf16 autocast (AMX), fp32 norms and residual stream, AdamW with warm-up + cosine over the
wall-clock budget, EMA of the weights (the exported model is the EMA).

Files in --out: log.txt (progress), checkpoint.pt (resumable: weights, EMA, optimizer, step,
elapsed time; written every --checkpoint-minutes, a rerun resumes from it), snap-XXXmin.pt
(EMA model every --snapshot-minutes, for evaluate.py's learning curve) and model.pt (the final
EMA model). The model files are HartModel.checkpoint() dicts plus 'step' and 'elapsed_s'.

This file is the command line; the training itself is in lab/generator/ (forward.py: teacher
inputs and the block-causal pass; loss.py; batches.py; model.py: config, init, EMA, saving).
"""
import argparse
import dataclasses
import os
import time

import numpy as np

# Threads sleep instead of spinning while they wait: on this shared 2-core box spinning threads
# steal the cores other jobs (and our own second thread) need. Read when torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

from hart.config import HartConfig
from hart.model import HartModel
from hart.saved import load_saved
from hart.vae import tokenizer_blob
from lab import REPO
from lab.data import load_or_encode, load_or_mark_objects
from lab.generator.batches import EncodedData, held_out_data
from lab.generator.binding_negatives import KINDS
from lab.generator.forward import RopeCache
from lab.generator.loss import losses
from lab.generator.model import (EMA, build_config, ema_model, init_weights, keep_fp32_residual_stream,
                                 make_optimizer, save_model, trainable_parameters)
from lab.shapes.dataset import TRAINING_IMAGES, render_if_missing
from lab.train_utils import (RunFolder, Stopwatch, cosine_lr, resolve_device, rng_state, save_checkpoint, set_lr,
                             set_rng_state)


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
    ap = argparse.ArgumentParser(prog="tools/py lab.train_generator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
                         "data is ready, and the schedule follows the shrunk budget (a remote machine's time limit)")
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


def main(argv=None):
    args = parse_args(argv)
    run = RunFolder(args.out, "model.pt", args.threads, args.seed)
    log, ckpt_path, final_path, ckpt = run.log, run.checkpoint_path, run.final_path, run.checkpoint
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
