"""The reference sampler (hart/sampler.py), timed with the engine's stage names.

Stages (milliseconds, as StageTimings in src/engine/types.ts): textEncoder (text encoder and
conditioning), transformer (every step), head (guided logits and the diffusion condition),
sampling (top-k/top-p filtering, token draws, Gumbel smoothing), scaleUpdate (φ, the next scale's
input), diffusion (the residual head's sampler), decoder (tokenizer decoder and pixels); preview
is 0 (the reference draws no previews). The wrappers only time: the trace is the sampler's own.
"""
import contextlib
import dataclasses
import os
import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from hart import sampler
from hart.config import SamplingDefaults, get_config
from hart.model import HartModel

STAGES = ("textEncoder", "transformer", "head", "sampling", "scaleUpdate", "preview", "diffusion", "decoder", "total")


def decoder_weights(package: str) -> Dict[str, torch.Tensor]:
    """The package decoder graph's named weights ("tokenizer.decoder...."), float32."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(os.path.join(package, "decoder.onnx")).graph
    return {i.name[len("tokenizer."):]: torch.from_numpy(np.array(numpy_helper.to_array(i), dtype=np.float32))
            for i in graph.initializer if i.name.startswith("tokenizer.")}


def load_reference(spec: str, package: Optional[str] = None) -> HartModel:
    """"random:CONFIG:SEED" (as `tools/py export --random` builds it) or a checkpoint path.

    A checkpoint may keep its decoder in float16 (lab/slim_checkpoint.py); with `package`, the
    decoder takes the package's float32 weights instead, so both sides decode with the same ones.
    """
    if spec.startswith("random:"):
        _, config, seed = spec.split(":")
        return HartModel.random(get_config(config), int(seed))
    model = HartModel.from_checkpoint(spec)
    if package is not None and os.path.exists(os.path.join(package, "decoder.onnx")):
        state = model.tokenizer.state_dict()
        exact = {k: v for k, v in decoder_weights(package).items() if k in state and v.shape == state[k].shape}
        model.tokenizer.load_state_dict(exact, strict=False)
    return model


def draw_arrays(draws: sampler.Draws):
    """(name, array) in file order: token uniforms, Gumbel uniforms, then the diffusion noise."""
    out = [(f"tokenUniforms.{k}", u.astype("<f8")) for k, u in enumerate(draws.token_uniforms)]
    out += [(f"gumbelUniforms.{k}", u.astype("<f8")) for k, u in enumerate(draws.gumbel_uniforms or [])]
    out += [(f"diffusionNoise.{i}", n.astype("<f4")) for i, n in enumerate(draws.diffusion_noise or [])]
    return out


def write_draws(draws: sampler.Draws, path: str) -> dict:
    """Writes the draws as one little-endian file; returns {name: {offset, dtype, length}}."""
    layout, offset = {}, 0
    with open(path, "wb") as f:
        for name, array in draw_arrays(draws):
            data = np.ascontiguousarray(array).tobytes()
            layout[name] = {"offset": offset, "dtype": "float64" if array.dtype.itemsize == 8 else "float32",
                            "length": int(array.size)}
            f.write(data)
            offset += len(data)
    return layout


class StageClock:
    """Accumulates wall time per stage while installed on a model."""

    def __init__(self):
        self.ms = dict.fromkeys(STAGES, 0.0)

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms[stage] += (time.perf_counter() - started) * 1000.0
        return timed


def _install(model: HartModel, clock: StageClock) -> HartModel:
    """A view of `model` whose parts report to `clock` (the module's weights are shared)."""
    tr, q, tok = model.transformer, model.tokenizer.quantize, model.tokenizer
    for obj, name, stage in ((tr, "condition", "textEncoder"), (tr, "step", "transformer"),
                             (tr, "guided_logits", "head"), (tr, "diffusion_condition", "head"),
                             (tr, "scale_input", "scaleUpdate"), (q, "add_scale", "scaleUpdate"),
                             (q, "next_input", "scaleUpdate"), (tr.diffloss, "sample", "diffusion"),
                             (tok, "decode_unit", "decoder")):
        obj.__dict__.pop(name, None)                      # a previous clock's wrapper
        setattr(obj, name, clock.wrap(stage, getattr(obj, name)))
    text = model.text_encoder
    return dataclasses.replace(model, text_encoder=clock.wrap("textEncoder", text) if text is not None else None)


@contextlib.contextmanager
def _timed_sampling(clock: StageClock):
    names = ("filter_logits", "sample_tokens", "smooth_vectors", "to_pixels")
    saved = {n: getattr(sampler, n) for n in names}
    try:
        for n in names:
            setattr(sampler, n, clock.wrap("decoder" if n == "to_pixels" else "sampling", saved[n]))
        yield
    finally:
        for n, fn in saved.items():
            setattr(sampler, n, fn)


def timed_generate(model: HartModel, prompt: str, settings: SamplingDefaults,
                   draws: sampler.Draws) -> Tuple[sampler.Trace, Dict[str, float]]:
    """One image of the reference sampler and its stage times in milliseconds."""
    clock = StageClock()
    view = _install(model, clock)
    started = time.perf_counter()
    try:
        with _timed_sampling(clock):
            trace = sampler.generate(view, [prompt], settings, draws)
    finally:
        for obj in (model.transformer, model.tokenizer.quantize, model.tokenizer, model.transformer.diffloss):
            for name in [n for n, v in obj.__dict__.items() if callable(v) and getattr(v, "__name__", "") == "timed"]:
                del obj.__dict__[name]
    clock.ms["total"] = (time.perf_counter() - started) * 1000.0
    return trace, clock.ms
