"""Text → image with HART in PyTorch, step for step as docs/model-package.md §4 prescribes.

This is the reference the TypeScript engine is checked against: every random draw comes from
arrays (`Draws`), token sampling runs in float64 exactly as the contract describes, and a trace
records what each scale produced.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .config import HartConfig, SamplingDefaults, top_k_at
from .model import HartModel
from .rope import cfg_image_rope, cfg_text_rope
from .text_vocab import PAD_ID, tokenize


# Schedule. -----------------------------------------------------------------------------

def scale_ratio(k: int, num_scales: int) -> float:
    """k/(K−1) for k < K−1; the last scale reuses the previous ratio (HART's loop variable)."""
    return min(k, num_scales - 2) / (num_scales - 1)


def guidance_at(cfg: float, k: int, num_scales: int, guided_scales: int = 0) -> float:
    """HART's ramp cfg·k/(K−1), cut to 0 from scale `guided_scales` on (0: never cut)."""
    if guided_scales and k >= guided_scales:
        return 0.0
    return cfg * scale_ratio(k, num_scales)


def gumbel_tau(k: int, num_scales: int) -> float:
    return max(0.27 * (1 - 0.95 * scale_ratio(k, num_scales)), 0.005)


# Random draws. -------------------------------------------------------------------------

@dataclass
class Draws:
    """Injected randomness. Orders: (image, position) and (image, position, vocabulary entry)."""
    token_uniforms: List[np.ndarray]                 # per scale [B·L_k] float64 in [0, 1)
    gumbel_uniforms: Optional[List[np.ndarray]] = None    # per scale [B·L_k·V] float64
    diffusion_noise: Optional[List[np.ndarray]] = None    # 8 × [B·L_last·Cv] float32 N(0, 1)


def make_draws(config: HartConfig, batch: int, seed: int, smooth: bool = True, residual: bool = True) -> Draws:
    rng = np.random.Generator(np.random.PCG64(seed))
    sizes = [batch * pn * pn for pn in config.patch_nums]
    token = [rng.random(n) for n in sizes]
    gumbel = [rng.random(n * config.vocab_size) for n in sizes] if smooth else None
    noise = None
    if residual:
        m = batch * config.latent_side ** 2 * config.latent_channels
        noise = [rng.standard_normal(m).astype(np.float32) for _ in range(config.diffusion.steps)]
    return Draws(token, gumbel, noise)


# Token sampling (float64, docs/model-package.md §4 step 6). ----------------------------

def _softmax(x: np.ndarray) -> np.ndarray:
    """Row softmax; the normaliser is a sequential sum in vocabulary order, as the engine's loop."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / np.cumsum(e, axis=-1)[:, -1:]


def filter_logits(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """Logits [M, V] divided by the temperature, with removed entries set to −inf."""
    x = np.asarray(logits, dtype=np.float64) / temperature
    vocab = x.shape[-1]
    if 0 < top_k < vocab:
        kth = np.sort(x, axis=-1)[:, vocab - top_k][:, None]
        x = np.where(x >= kth, x, -np.inf)
    if top_p > 0:
        p = _softmax(x)
        keep = np.zeros_like(x, dtype=bool)
        for row in range(x.shape[0]):
            # Descending probability, ties by lower index; keep the shortest prefix reaching top_p.
            order = np.argsort(-p[row], kind="stable")
            reached = np.cumsum(p[row, order]) >= top_p
            count = int(np.argmax(reached)) + 1 if reached.any() else vocab
            keep[row, order[:count]] = True
        x = np.where(keep, x, -np.inf)
    return x


def sample_tokens(kept: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """The first index whose cumulative kept probability exceeds u (vocabulary order)."""
    p = _softmax(kept)
    cum = np.cumsum(p, axis=-1)
    above = cum > np.asarray(uniforms, dtype=np.float64)[:, None]
    idx = np.argmax(above, axis=-1)
    # u beyond the rounded total: take the last token that has any probability.
    last = p.shape[-1] - 1 - np.argmax(p[:, ::-1] > 0, axis=-1)
    return np.where(above.any(axis=-1), idx, last)


def smooth_vectors(kept: np.ndarray, ratio: float, tau: float, uniforms: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """HART's Gumbel smoothing: softmax((kept·(1 + ratio) + g) / τ) · E, g = −log(−log u)."""
    with np.errstate(divide="ignore"):
        g = -np.log(-np.log(np.asarray(uniforms, dtype=np.float64).reshape(kept.shape)))
    weights = _softmax((kept * (1.0 + ratio) + g) / tau)
    return (weights @ codebook.astype(np.float64)).astype(np.float32)


# Prompts. ------------------------------------------------------------------------------

def encode_prompts(config: HartConfig, prompts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """(input_ids, attention_mask) [B, P+T] int32 and the real token count n of each prompt.

    Prompts are truncated to T tokens and right-padded with [PAD]; the fixed prefix ids are
    prepended with mask 1.
    """
    te = config.text_encoder
    prefix, window = list(te.prefix_ids), config.context_tokens
    ids, mask, n_valid = [], [], []
    for prompt in prompts:
        tokens = tokenize(prompt, te.words)[:window]
        n_valid.append(len(tokens))
        pad = window - len(tokens)
        ids.append(prefix + tokens + [PAD_ID] * pad)
        mask.append([1] * (len(prefix) + len(tokens)) + [0] * pad)
    return np.array(ids, dtype=np.int32), np.array(mask, dtype=np.int32), n_valid


# The loop. -----------------------------------------------------------------------------

@dataclass
class Trace:
    input_ids: np.ndarray = None
    text_hidden: np.ndarray = None                       # [B, T, D] (prefix positions dropped)
    scales: List[Dict[str, np.ndarray]] = field(default_factory=list)   # logits, tokens, f_hat
    residual: Optional[np.ndarray] = None                # [B·L_last, Cv], already × 0.6
    image: np.ndarray = None                             # [B, 3, H, W] in [0, 1]
    pixels: np.ndarray = None                            # [B, H, W, 4] uint8


def to_pixels(image: np.ndarray) -> np.ndarray:
    """[B, 3, H, W] in [0, 1] → RGBA bytes by truncation, floor(255·v), as HART's sample.py."""
    rgb = np.floor(255.0 * image.astype(np.float64)).clip(0, 255).astype(np.uint8)
    rgb = rgb.transpose(0, 2, 3, 1)
    alpha = np.full(rgb.shape[:3] + (1,), 255, dtype=np.uint8)
    return np.concatenate([rgb, alpha], axis=-1)


def _token_map(vectors: torch.Tensor, pn: int) -> torch.Tensor:
    """[B, pn², Cv] row-major tokens → [B, Cv, pn, pn]."""
    return vectors.transpose(1, 2).reshape(vectors.shape[0], -1, pn, pn)


@torch.no_grad()
def generate(model: HartModel, prompts: Sequence[str], settings: SamplingDefaults, draws: Draws,
             forced: Optional[Sequence[np.ndarray]] = None) -> Trace:
    """forced (diagnostics): tokens [B, pn_k²] that replace the draws of the first len(forced)
    scales, e.g. a real image's, to see what the model makes of the scales after them."""
    config, tr, quantizer = model.config, model.transformer, model.tokenizer.quantize
    c = config
    batch, K, side = len(prompts), config.num_scales, config.latent_side
    trace = Trace()

    # 1–2. Text features, then the CFG batch: conditional rows, then zeros (the null condition).
    ids, mask, n_valid = encode_prompts(config, prompts)
    hidden_text = model.text_encoder(torch.from_numpy(ids), torch.from_numpy(mask))
    hidden_text = hidden_text[:, len(c.text_encoder.prefix_ids):]
    trace.input_ids, trace.text_hidden = ids, hidden_text.numpy()
    x, head_cond = tr.condition(torch.cat([hidden_text, torch.zeros_like(hidden_text)]))

    # 3–4. Step 0 over the text window; the last text position predicts the 1×1 scale.
    cos, sin = cfg_text_rope(n_valid, c.context_tokens, c.head_dim, c.rope_theta)
    hidden, past = tr.step(x, cos, sin)
    hidden = hidden[:, -1:]

    codebook = quantizer.embedding.weight
    levels = tr.level_table()
    f_hat = torch.zeros(batch, c.latent_channels, side, side)
    for k, pn in enumerate(c.patch_nums):
        guidance = guidance_at(settings.cfg, k, K, settings.guided_scales)
        logits = tr.guided_logits(hidden, head_cond, guidance)           # [B, L, V] float32
        flat = logits.reshape(-1, c.vocab_size).numpy()
        kept = filter_logits(flat, settings.temperature, top_k_at(settings.top_k, k), settings.top_p)
        if forced is not None and k < len(forced):
            idx = np.asarray(forced[k], dtype=np.int64).reshape(-1)
        else:
            idx = sample_tokens(kept, draws.token_uniforms[k])
        hard = codebook[torch.from_numpy(idx)].reshape(batch, pn * pn, -1)
        vectors = hard
        if settings.smooth:
            soft = smooth_vectors(kept, scale_ratio(k, K), gumbel_tau(k, K), draws.gumbel_uniforms[k],
                                  codebook.numpy())
            vectors = torch.from_numpy(soft).reshape(batch, pn * pn, -1)

        if k < K - 1:
            # 7. φ(Up(tokens)) into f_hat; the next scale's input is Down(f_hat), embedded.
            f_hat = quantizer.add_scale(f_hat, _token_map(vectors, pn), k)
            nxt = c.patch_nums[k + 1]
            x = tr.scale_input(quantizer.next_input(f_hat, k + 1), levels[k + 1])
            cos, sin = cfg_image_rope(nxt, side, n_valid, c.head_dim, c.rope_theta)
            hidden, past = tr.step(torch.cat([x, x]), cos, sin, past)
        else:
            # 8. Last scale: tokens (+ the diffusion residual, conditioned on the hard tokens).
            if settings.residual:
                z = tr.diffusion_condition(hidden, hard)
                m = batch * pn * pn
                noises = [torch.from_numpy(n).reshape(m, c.latent_channels) for n in draws.diffusion_noise]
                residual = tr.diffloss.sample(z[:m], z[m:], guidance, noises)
                trace.residual = residual.numpy()
                vectors = vectors + residual.reshape(batch, pn * pn, -1)
            f_hat = quantizer.add_scale(f_hat, _token_map(vectors, pn), k)
        trace.scales.append({"logits": logits.numpy(), "tokens": idx.reshape(batch, pn * pn).astype(np.int32),
                             "f_hat": f_hat.numpy()})

    # 9. Decode.
    trace.image = model.tokenizer.decode_unit(f_hat).numpy()
    trace.pixels = to_pixels(trace.image)
    return trace
