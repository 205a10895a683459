"""Golden sampler traces for the TypeScript engine (layout: tests/fixtures/README.md).

Each case fixes a prompt, the settings and every random draw, and records what the PyTorch
reference produced at each scale; the engine must reproduce it from the package alone.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from hart.config import SamplingDefaults, sampling_json
from hart.model import HartModel
from hart.sampler import Draws, generate, guidance_at, make_draws
from hart.text_vocab import tokenize

GOLDEN_FORMAT = "hart-web-golden"


@dataclass
class GoldenCase:
    name: str
    prompt: str
    settings: SamplingDefaults
    seed: int


DEFAULT_CASES = [
    GoldenCase("residual", "a red circle on a blue background",
               SamplingDefaults(cfg=3.0, top_k=16, top_p=0.9, temperature=0.9, smooth=False, residual=True,
                                guided_scales=3), seed=1),   # the last scale and the residual head unguided
    # Longer than the tiny model's 8-token window: the engine must truncate (and warn);
    # "," and "!" are unknown pieces.
    GoldenCase("smooth", "Two small GREEN squares, above a white background!",
               SamplingDefaults(cfg=2.0, top_k=0, top_p=0.0, temperature=1.0, smooth=True, residual=True), seed=2),
]


class _BinWriter:
    """Appends little-endian arrays to one .bin file and remembers where each one lies."""

    def __init__(self, path: str):
        self.path = path
        self.arrays: Dict[str, dict] = {}
        self.chunks: List[bytes] = []
        self.offset = 0

    def add(self, name: str, array: np.ndarray, dtype: str) -> None:
        numpy_dtype = {"float64": "<f8", "float32": "<f4", "int32": "<i4", "uint8": "u1"}[dtype]
        data = np.ascontiguousarray(array, dtype=numpy_dtype).tobytes()
        pad = (-self.offset) % 8                      # Float64Array views need 8-byte offsets
        self.chunks.append(b"\0" * pad)
        self.offset += pad
        self.arrays[name] = {"offset": self.offset, "dtype": dtype, "shape": list(np.shape(array))}
        self.chunks.append(data)
        self.offset += len(data)

    def close(self) -> None:
        with open(self.path, "wb") as f:
            f.write(b"".join(self.chunks))


def golden_case(model: HartModel, case: GoldenCase, out_dir: str) -> dict:
    config = model.config
    s = case.settings
    draws: Draws = make_draws(config, 1, case.seed, smooth=s.smooth, residual=s.residual)
    trace = generate(model, [case.prompt], s, draws)
    bin_name = f"golden-{case.name}.bin"
    out = _BinWriter(os.path.join(out_dir, bin_name))
    for k, u in enumerate(draws.token_uniforms):
        out.add(f"tokenUniforms.{k}", u, "float64")
    if s.smooth:
        for k, u in enumerate(draws.gumbel_uniforms):
            out.add(f"gumbelUniforms.{k}", u, "float64")
    if s.residual:
        for i, n in enumerate(draws.diffusion_noise):
            out.add(f"diffusionNoise.{i}", n, "float32")
    out.add("textHidden", trace.text_hidden, "float32")
    for k, scale in enumerate(trace.scales):
        out.add(f"scales.{k}.logits", scale["logits"], "float32")
        out.add(f"scales.{k}.tokens", scale["tokens"], "int32")
        out.add(f"scales.{k}.fHat", scale["f_hat"], "float32")
    if trace.residual is not None:
        out.add("residual", trace.residual, "float32")
    out.add("image", trace.image, "float32")
    out.add("pixels", trace.pixels, "uint8")
    out.close()
    pieces = tokenize(case.prompt, config.text_encoder.words)
    return {
        "name": case.name,
        "prompt": case.prompt,
        "batch": 1,
        "settings": sampling_json(s),
        "inputIds": trace.input_ids[0].tolist(),
        "tokenCount": min(len(pieces), config.context_tokens),
        "truncated": len(pieces) > config.context_tokens,
        "guidance": [guidance_at(s.cfg, k, config.num_scales, s.guided_scales) for k in range(config.num_scales)],
        "bin": bin_name,
        "arrays": out.arrays,
    }


def write_golden(model: HartModel, out_dir: str, cases=None) -> dict:
    cases = DEFAULT_CASES if cases is None else cases
    golden = {
        "format": GOLDEN_FORMAT,
        "version": 1,
        "model": model.config.name,
        "cases": [golden_case(model, case, out_dir) for case in cases],
    }
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    return golden
