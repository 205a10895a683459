"""Train HART's hybrid tokenizer for the small shapes-world model on this CPU.

    tools/py lab.train_tokenizer --out runs/tokenizer --minutes 45

Two stages inside one time budget (docs/hart.md §11.2):
  1. VQ training: encoder, codebook, φ convs and decoder learn the multi-scale residual VQ
     (reconstruction + VQ loss; dead codewords are re-seeded from the vectors being quantized).
  2. Hybrid training: encoder, quant_conv and codebook are frozen; the decoder learns to decode
     both the discrete-only latent and the continuous latent, alternating with
     skip_continuous_prob = 0.5 as HART does.

Progress goes to <out>/log.txt (with PSNR of the discrete and the continuous path on a fixed
held-out batch); <out>/checkpoint.pt is written every few minutes and a rerun resumes from it.
The result is <out>/tokenizer.pt = {state_dict, config, metrics}; load it with
hart.vae.load_tokenizer.
"""
import argparse
import os
import time
from dataclasses import asdict


# train_utils first: it sets OMP_WAIT_POLICY before torch creates its thread pool.
from lab import REPO
from lab.train_utils import (ProgressLog, RunFolder, Stopwatch, autocast_bf16, cosine_lr, resolve_device, psnr,
                             rng_state, save_checkpoint, set_lr, set_rng_state)
import numpy as np
import torch
import torch.nn.functional as F

from hart.quantizer import QuantizerConfig
from hart.vae import HybridTokenizer, VaeConfig

DEFAULT_PATCH_NUMS = "1,2,3,4,5,6,8,10,13,16"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog='tools/py lab.train_tokenizer', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/tokenizer")
    ap.add_argument("--minutes", type=float, default=45.0, help="total training time, both stages")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: minutes of this job's own compute (robust to other jobs on the box); wall: wall-clock")
    ap.add_argument("--stage2-fraction", type=float, default=0.3, help="share of the time for hybrid training")
    ap.add_argument("--decoder-from", help="a tokenizer.pt (or a model file) to continue stage 2 from when --out has "
                                           "no checkpoint: only the decoder learns, --minutes of it, the learning "
                                           "rate on a fresh cosine (e.g. after tokenizer_from_package.py)")
    # A private cache under runs/: another job rebuilding a shared cache cannot pull the file from under us.
    ap.add_argument("--data", default=os.path.join(REPO, "runs", "shapes-20k"), help="shapes .npy cache folder")
    ap.add_argument("--images", type=int, default=20000, help="examples to render if the cache is missing")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--ch", type=int, default=16)
    ap.add_argument("--ch-mult", default="1,2,4,8")
    ap.add_argument("--res-blocks", type=int, default=1)
    ap.add_argument("--channels", type=int, default=32, help="latent channels Cv")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--patch-nums", default=DEFAULT_PATCH_NUMS)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--l1-weight", type=float, default=0.2)
    ap.add_argument("--skip-continuous-prob", type=float, default=0.5)
    ap.add_argument("--held-out", type=int, default=16)
    ap.add_argument("--eval-seconds", type=float, default=120.0)
    ap.add_argument("--checkpoint-minutes", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto",
                    help="cpu, cuda or auto (the GPU when torch sees one; use --clock wall there)")
    ap.add_argument("--fp32", action="store_true", help="disable bf16 autocast")
    return ap.parse_args(argv)


def ints(text: str) -> tuple:
    return tuple(int(v) for v in text.split(","))


def build_configs(args):
    patch_nums = ints(args.patch_nums)
    vae = VaeConfig(image_size=args.image_size, ch=args.ch, ch_mult=ints(args.ch_mult),
                    num_res_blocks=args.res_blocks, z_channels=args.channels)
    quantizer = QuantizerConfig(vocab_size=args.vocab, channels=args.channels, patch_nums=patch_nums)
    return vae, quantizer


# ----------------------------------------------------------------------------------------
# Data


def ensure_cache(folder: str, n: int, size: int, log: ProgressLog) -> np.ndarray:
    """The shapes images (uint8 [N, H, W, 3], read into memory); the cache is rendered once if missing."""
    from lab.shapes.dataset import load_cache, render_if_missing
    render_if_missing(folder, n, size, log=log.write)
    images, _ = load_cache(folder)
    return np.array(images)  # ~1 GB in RAM: random batches without page faults


def to_model_range(images_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def sample_batch(images: np.ndarray, batch: int, gen: np.random.Generator,
                 device: torch.device = torch.device("cpu")) -> torch.Tensor:
    idx = np.sort(gen.choice(images.shape[0], size=batch, replace=False))
    x = to_model_range(images[idx])
    # Mirror half the batch: free extra variety, and a tokenizer has no notion of left/right.
    flip = torch.from_numpy(gen.random(batch) < 0.5)
    x[flip] = x[flip].flip(-1)
    return x.to(device)


def held_out_batch(n: int, size: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    from lab.shapes.dataset import held_out_example
    return to_model_range(np.stack([held_out_example(0, i, size)[0] for i in range(n)])).to(device)


# ----------------------------------------------------------------------------------------
# Training pieces


def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor, l1_weight: float) -> torch.Tensor:
    rec = rec.float()
    return F.mse_loss(rec, x) + l1_weight * F.l1_loss(rec, x)


@torch.no_grad()
def evaluate(model: HybridTokenizer, x: torch.Tensor) -> dict:
    """PSNR (dB, fp32) of the discrete-only and the continuous reconstruction of a fixed batch."""
    model.eval()
    f = model.encode_continuous(x)
    _, f_hat, residual = model.quantize.encode_indices(f)
    target = x * 0.5 + 0.5
    out = {"psnr_discrete": psnr(model.decode_unit(f_hat), target),
           "psnr_continuous": psnr(model.decode_unit(f), target),
           "residual_rms": residual.square().mean().sqrt().item(),
           "latent_rms": f.square().mean().sqrt().item()}
    model.train()
    return out


def enter_stage2(model: HybridTokenizer):
    """Freeze what HART freezes for hybrid training; only post_quant_conv and the decoder learn."""
    for module in (model.encoder, model.quant_conv, model.quantize):
        module.requires_grad_(False)
    params = list(model.post_quant_conv.parameters()) + list(model.decoder.parameters())
    return params


def make_optimizer(params, lr: float):
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)


class CodeUsage:
    """Moving average of how often each codeword is picked, over all scales of a batch."""

    def __init__(self, vocab: int, decay: float = 0.95, device: torch.device = torch.device("cpu")):
        self.decay = decay
        self.hits = torch.zeros(vocab, device=device)

    def update(self, idx_list) -> None:
        counts = torch.zeros_like(self.hits)
        for idx in idx_list:
            counts += torch.bincount(idx.reshape(-1), minlength=self.hits.numel()).float()
        self.hits.mul_(self.decay).add_(counts, alpha=1 - self.decay)

    def dead(self, threshold: float) -> torch.Tensor:
        return self.hits < threshold

    def used_fraction(self, threshold: float) -> float:
        return (self.hits >= threshold).float().mean().item()


# ----------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    run = RunFolder(args.out, "tokenizer.pt", args.threads, args.seed)
    log, ckpt_path, final_path, ckpt = run.log, run.checkpoint_path, run.final_path, run.checkpoint
    total_s = args.minutes * 60.0
    stage1_s = total_s * (1.0 - args.stage2_fraction)
    # A finished run is only extended when asked for more minutes than it already trained.
    if ckpt is not None and ckpt.get("done") and ckpt["elapsed"] >= total_s and os.path.exists(final_path):
        log.write(f"already finished: {final_path} ({ckpt['step']} steps, {ckpt['metrics']})")
        return
    start = None
    if ckpt is None and args.decoder_from:
        from hart.saved import load_saved
        from hart.vae import tokenizer_blob, tokenizer_configs
        start = tokenizer_blob(load_saved(args.decoder_from))
        stage1_s = 0.0   # the whole budget is stage 2
        vae_cfg, q_cfg = tokenizer_configs(start["config"])
    elif ckpt is not None:
        if ckpt.get("decoder_only"):
            stage1_s = 0.0   # a --decoder-from run, resumed: still all stage 2
        vae_cfg = VaeConfig(**ckpt["config"]["vae"])
        q_cfg = QuantizerConfig(**ckpt["config"]["quantizer"])
    else:
        vae_cfg, q_cfg = build_configs(args)
    model = HybridTokenizer(vae_cfg, q_cfg)
    device = resolve_device(args.device)

    images = ensure_cache(args.data, args.images, args.image_size, log)
    held_out = held_out_batch(args.held_out, args.image_size, device)
    usage = CodeUsage(q_cfg.vocab_size, device=device)
    # A codeword counts as dead when it is picked less than once per ~10 batches on average.
    dead_threshold = 0.1

    stage, step = 1, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        stage, step = ckpt["stage"], ckpt["step"]
        usage.hits = ckpt["usage"].to(device)
        set_rng_state(ckpt["rng"])
    elif start is not None:
        model.load_state_dict({k: v.float() for k, v in start["state_dict"].items()})
        stage, step = 2, int(start.get("steps", 0))
    model.to(device)   # made (or loaded) on the CPU first, so a run starts alike anywhere
    gen = np.random.default_rng([args.seed, step])  # data order continues on resume without repeating
    params = enter_stage2(model) if stage == 2 else list(model.parameters())
    optimizer = make_optimizer(params, args.lr)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    clock = Stopwatch(ckpt["elapsed"] if ckpt is not None else 0.0, mode=args.clock, threads=args.threads)

    n_params = sum(p.numel() for p in model.parameters())
    if start is not None:
        log.write(f"decoder from {args.decoder_from} (step {step}): stage 2 only, {args.minutes} min, lr {args.lr}, "
                  f"skip_continuous_prob {args.skip_continuous_prob}, device {device}")
    elif ckpt is None:
        log.write(f"start: {n_params / 1e6:.2f}M parameters (decoder "
                  f"{sum(p.numel() for p in model.decoder.parameters()) / 1e6:.2f}M), vae={asdict(vae_cfg)}, "
                  f"quantizer={asdict(q_cfg)}, batch={args.batch}, lr={args.lr}, minutes={args.minutes}, "
                  f"stage 2 from minute {stage1_s / 60:.1f} ({args.clock} clock), device {device}, "
                  f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    else:
        log.write(f"resume at step {step}, stage {stage}, {clock.elapsed() / 60:.1f} min trained, device {device}")

    def save(done=False, metrics=None):
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "stage": stage, "step": step,
            "elapsed": clock.elapsed(), "usage": usage.hits, "rng": rng_state(), "done": done,
            "decoder_only": stage1_s == 0.0,
            "config": {"vae": asdict(vae_cfg), "quantizer": asdict(q_cfg)}, "metrics": metrics})

    last_eval = last_ckpt = wall_start = time.time()
    window = {"loss": 0.0, "vq": 0.0, "n": 0, "images": 0, "t": time.time(), "replaced": 0}

    def report(tag="progress"):
        m = evaluate(model, held_out)
        n = max(window["n"], 1)
        rate = window["images"] / max(time.time() - window["t"], 1e-6)
        log.write(f"{tag} step {step} stage {stage} elapsed {clock.elapsed() / 60:.1f} min "
                  f"(wall {(time.time() - wall_start) / 60:.1f} min this run) "
                  f"loss {window['loss'] / n:.4f} vq {window['vq'] / n:.4f} lr {optimizer.param_groups[0]['lr']:.2e} "
                  f"psnr_discrete {m['psnr_discrete']:.2f} psnr_continuous {m['psnr_continuous']:.2f} "
                  f"gain {m['psnr_continuous'] - m['psnr_discrete']:+.2f} dB codes_used "
                  f"{100 * usage.used_fraction(dead_threshold):.0f}% replaced {window['replaced']} "
                  f"latent_rms {m['latent_rms']:.3f} residual_rms {m['residual_rms']:.3f} {rate:.1f} img/s")
        window.update(loss=0.0, vq=0.0, n=0, images=0, t=time.time(), replaced=0)
        return m

    model.train()
    while clock.elapsed() < total_s:
        if stage == 1 and clock.elapsed() >= stage1_s:
            report("end of stage 1:")
            stage = 2
            params = enter_stage2(model)
            optimizer = make_optimizer(params, args.lr)
            log.write("stage 2: encoder, quant_conv and codebook frozen; decoder learns discrete and continuous latents")

        if stage == 1:
            progress = clock.elapsed() / stage1_s
        else:
            progress = (clock.elapsed() - stage1_s) / max(total_s - stage1_s, 1e-6)
        set_lr(optimizer, cosine_lr(args.lr, progress))

        x = sample_batch(images, args.batch, gen, device)
        queries = [] if stage == 1 else None
        with autocast_bf16(not args.fp32, device.type):
            if stage == 1:
                f = model.encode_continuous(x)
                f_hat, vq_loss, idx_list = model.quantize(f, queries)
                rec = model.decode_raw(f_hat)
                loss = reconstruction_loss(rec, x, args.l1_weight) + vq_loss
            else:
                rec, vq_loss, idx_list, _ = model(x, skip_continuous_prob=args.skip_continuous_prob)
                loss = reconstruction_loss(rec, x, args.l1_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params if stage == 2 else model.parameters(), 1.0)
        optimizer.step()
        step += 1
        window["loss"] += loss.item()
        window["vq"] += float(vq_loss)
        window["n"] += 1
        window["images"] += args.batch

        if stage == 1:
            usage.update(idx_list)
            # Re-seed dead codes through most of stage 1; stop early enough for the rest to settle.
            if step % 25 == 0 and step >= 25 and progress < 0.8:
                dead = usage.dead(dead_threshold)
                replaced = model.quantize.replace_codes(dead, torch.cat(queries))
                usage.hits[dead] = 1.0  # give re-seeded codes time to be picked before judging them again
                window["replaced"] += replaced

        now = time.time()
        if now - last_eval >= args.eval_seconds or step == 10:
            report()
            last_eval = time.time()
        if now - last_ckpt >= args.checkpoint_minutes * 60:
            save()
            last_ckpt = time.time()

    metrics = report("final:")
    save(done=True, metrics=metrics)
    torch.save({"state_dict": model.state_dict(), "config": {"vae": asdict(vae_cfg), "quantizer": asdict(q_cfg)},
                "metrics": metrics, "steps": step}, final_path)
    log.write(f"saved {final_path}")


if __name__ == "__main__":
    main()
