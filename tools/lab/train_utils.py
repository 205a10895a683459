"""Small helpers shared by the CPU training scripts: checkpoints, progress log, bf16, metrics.

Training here runs on a 2-core CPU whose AMX units make bf16 matrix work several times
faster than fp32, so the scripts run under bf16 autocast and keep the few layers that
torch 1.13 cannot run in bf16 (GroupNorm) in fp32 inside the modules themselves.
"""
import math
import os
import random
import time
from contextlib import nullcontext

# OpenMP threads that spin while waiting collapse when other jobs share the 2 cores (measured
# 5x slower per step); passive waiting costs nothing when the machine is free. This only
# takes effect if set before torch starts its thread pool, so training scripts import this
# module before anything else imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from hart.saved import load_saved


def setup_cpu(threads: int = 2, seed: int = 0) -> None:
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """The device a training script runs on: 'auto' is the GPU when torch sees one (a
    GPU machine runs the same recipe in minutes), else this CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch sees no GPU on this machine (use --device cpu)")
    return device


def autocast_bf16(enabled: bool = True, device_type: str = "cpu"):
    """bf16 autocast (matmuls and convs in bf16, reductions left to the modules): AMX on this
    CPU, tensor cores on a GPU."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if enabled else nullcontext()


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1], over the whole batch."""
    mse = (prediction.float() - target.float()).square().mean().item()
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def cosine_lr(base_lr: float, progress: float, warmup: float = 0.02, floor: float = 0.1) -> float:
    """Learning rate at progress ∈ [0, 1] of a run: linear warm-up, then cosine down to floor·base.

    Progress is measured in wall-clock time, because the runs here are budgeted in minutes.
    """
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return base_lr * max(progress / warmup, 0.01)
    t = (progress - warmup) / (1.0 - warmup)
    return base_lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str, state: dict) -> None:
    """Write atomically (temp file + rename) so a run killed mid-save keeps the previous checkpoint."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str):
    """The saved state dict, or None when there is no checkpoint yet."""
    if not os.path.exists(path):
        return None
    return load_saved(path)


class RunFolder:
    """A training run's folder: its log, its resumable checkpoint and its final file.

    Both training scripts start the same way: seed and size the CPU, create the folder, open the
    log, and load the checkpoint a stopped run left behind (None on a fresh start)."""

    def __init__(self, out: str, final_name: str, threads: int, seed: int):
        setup_cpu(threads, seed)
        os.makedirs(out, exist_ok=True)
        self.log = ProgressLog(os.path.join(out, "log.txt"))
        self.checkpoint_path = os.path.join(out, "checkpoint.pt")
        self.final_path = os.path.join(out, final_name)
        self.checkpoint = load_checkpoint(self.checkpoint_path)


class ProgressLog:
    """Appends timestamped lines to a log file (and echoes them), surviving restarts."""

    def __init__(self, path: str, echo: bool = True):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.echo = echo

    def write(self, line: str) -> None:
        stamped = time.strftime("%Y-%m-%d %H:%M:%S ") + line
        with open(self.path, "a") as f:
            f.write(stamped + "\n")
        if self.echo:
            print(stamped, flush=True)


class Stopwatch:
    """Training time that accumulates across resumed runs (time spent loading is not counted).

    mode "wall" counts wall-clock seconds. mode "cpu" counts this process's CPU seconds divided
    by its thread count, i.e. seconds of the machine's cores fully working for us: when other
    jobs share the 2 cores, the run takes longer but does the same amount of work, so its
    schedule (learning-rate decay, stage switch) and result do not depend on their load.
    """

    def __init__(self, already: float = 0.0, mode: str = "wall", threads: int = 1):
        if mode not in ("wall", "cpu"):
            raise ValueError(f"unknown clock {mode!r}")
        self.already = already
        self.mode = mode
        self.threads = max(threads, 1)
        self.start = self._now()

    def _now(self) -> float:
        return time.process_time() / self.threads if self.mode == "cpu" else time.time()

    def elapsed(self) -> float:
        return self.already + self._now() - self.start
