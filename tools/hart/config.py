"""One config object per HART model: tokenizer, transformer, diffusion head and text encoder.

A config travels with every checkpoint (`to_dict`/`from_dict`) and is written into the model
package's manifest, so nothing about a model is hard-coded elsewhere.
"""
import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Tuple, Union

from .diffusion import DiffusionConfig
from .quantizer import QuantizerConfig, phi_index
from .saved import build_dataclass, plain
from .text_vocab import SHAPES_WORDS
from .vae import VaeConfig


@dataclass
class TextEncoderConfig:
    """The text encoder slot.

    kind "small": our own bidirectional transformer over a word-level vocabulary (built in
    text_encoder.py); kind "qwen2": the published model's Qwen2-1.5B, converted elsewhere.
    The output width is `width`, which must equal the transformer's context_dim.
    """
    kind: str
    vocab_size: int
    width: int
    depth: int
    heads: int
    max_tokens: int
    norm_eps: float = 1e-6
    words: Tuple[str, ...] = ()
    prefix_ids: Tuple[int, ...] = ()
    # "small" only: add the normalised word + position embedding to the output, so each slot
    # always carries its own word. Without it a briefly trained encoder let its first block's
    # large attention/MLP outputs drown the object's colour word (docs/default-model.md).
    word_skip: bool = False


# HART's official top-k per scale: 600 on scales 0–6, 300 from scale 7 on (0-based), as
# `autoregressive_infer_cfg` in hart_transformer_t2i.py hard-codes it (docs/hart.md §7).
HART_TOP_K = {"values": [600, 300], "from": [0, 7]}


@dataclass
class SamplingDefaults:
    cfg: float = 4.0
    # A number for every scale, or a schedule {"values": [k0, k1, …], "from": [0, s1, …]}: values[i]
    # from 0-based scale from[i] on (docs/model-package.md §2). 0 turns top-k off.
    top_k: Union[int, dict] = 0
    top_p: float = 0.0
    temperature: float = 1.0
    smooth: bool = False
    residual: bool = True
    # Guidance only on scales k < guided_scales; finer scales and the residual head sample from the
    # conditional model alone. 0: every scale (HART). The small shapes model draws cleaner shapes
    # when its fine scales follow their own coarse layout instead of being pushed by the text.
    guided_scales: int = 0


def check_top_k(top_k) -> None:
    """Raises ValueError unless `top_k` is a whole number ≥ 0 or a valid schedule."""
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        if top_k < 0:
            raise ValueError(f"top_k {top_k} is negative")
        return
    if not isinstance(top_k, dict) or set(top_k) != {"values", "from"}:
        raise ValueError(f"top_k {top_k!r} is neither a whole number nor {{'values': [...], 'from': [...]}}")
    values, starts = list(top_k["values"]), list(top_k["from"])
    whole = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values + starts)
    if not values or len(values) != len(starts) or not whole or starts[0] != 0 or \
            any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"top_k schedule {top_k!r}: values and from must be as long, whole numbers ≥ 0, "
                         "and from must start at 0 and increase")


def top_k_at(top_k, scale: int) -> int:
    """The top-k of 0-based scale `scale` under a number or a schedule."""
    if not isinstance(top_k, dict):
        return int(top_k)
    k = top_k["values"][0]
    for value, start in zip(top_k["values"], top_k["from"]):
        if scale >= start:
            k = value
    return int(k)


def sampling_json(s: SamplingDefaults) -> dict:
    """Sampling settings under the engine's names (SamplingSettings in src/engine/types.ts)."""
    check_top_k(s.top_k)
    top_k = s.top_k if not isinstance(s.top_k, dict) else {"values": list(s.top_k["values"]),
                                                             "from": list(s.top_k["from"])}
    return {"cfg": s.cfg, "topK": top_k, "topP": s.top_p, "temperature": s.temperature,
            "smooth": s.smooth, "residual": s.residual, "guidedScales": s.guided_scales}


@dataclass
class HartConfig:
    name: str
    image_size: int
    quantizer: QuantizerConfig
    vae: VaeConfig
    diffusion: DiffusionConfig
    text_encoder: TextEncoderConfig
    width: int
    depth: int
    heads: int
    context_tokens: int
    context_dim: int
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # Attention logits are q·k·attention_scale/√hd. HART (VAR) uses 0.25 (docs/hart.md §4); a small
    # model trained briefly may read single text words better with a sharper 1.0.
    attention_scale: float = 0.25
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    description: str = ""
    examples: Tuple[str, ...] = ()

    def __post_init__(self):
        problems = []
        if self.width % self.heads:
            problems.append("width must be a multiple of heads")
        elif self.head_dim % 4:
            problems.append("the head dim must be a multiple of 4 (2D RoPE uses four blocks)")
        if self.diffusion.cond_dim != self.width:
            problems.append("diffusion.cond_dim must equal width")
        if self.diffusion.in_channels != self.quantizer.channels:
            problems.append("diffusion.in_channels must equal the latent channels")
        if self.vae.z_channels != self.quantizer.channels:
            problems.append("vae.z_channels must equal the latent channels")
        if self.vae.image_size != self.image_size:
            problems.append("vae.image_size must equal image_size")
        if self.image_size // 2 ** (len(self.vae.ch_mult) - 1) != self.patch_nums[-1]:
            problems.append("the last scale must equal the VAE's latent side")
        if self.text_encoder.width != self.context_dim:
            problems.append("the text encoder's width must equal context_dim")
        if self.text_encoder.kind == "small" and self.text_encoder.words:
            if len(self.text_encoder.words) + 2 != self.text_encoder.vocab_size:
                problems.append("text_encoder.vocab_size must be len(words) + 2 ([PAD], [UNK])")
        if self.text_encoder.max_tokens < len(self.text_encoder.prefix_ids) + self.context_tokens:
            problems.append("text_encoder.max_tokens is shorter than prefix + context_tokens")
        if problems:
            raise ValueError(f"bad HART config {self.name!r}: " + "; ".join(problems))

    # Derived sizes. -------------------------------------------------------------------

    @property
    def patch_nums(self) -> Tuple[int, ...]:
        return tuple(self.quantizer.patch_nums)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def latent_side(self) -> int:
        return self.patch_nums[-1]

    @property
    def latent_channels(self) -> int:
        return self.quantizer.channels

    @property
    def vocab_size(self) -> int:
        return self.quantizer.vocab_size

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_hidden(self) -> int:
        # HART's Llama MLP: 2/3 of 4·C, rounded up to a multiple of 256.
        return int((self.width * 4 * 2) / 3 + 255) // 256 * 256

    @property
    def phi_indices(self) -> Tuple[int, ...]:
        """φ conv used after each scale k < K-1 (the last scale has none)."""
        return tuple(phi_index(k, self.num_scales) for k in range(self.num_scales - 1))

    # Serialization. -------------------------------------------------------------------

    def to_dict(self) -> dict:
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "HartConfig":
        data = dict(data)
        parts = {
            "quantizer": QuantizerConfig, "vae": VaeConfig, "diffusion": DiffusionConfig,
            "text_encoder": TextEncoderConfig, "sampling": SamplingDefaults,
        }
        for key, part in parts.items():
            data[key] = build_dataclass(part, data[key])
        return build_dataclass(cls, data)


def hart_sampling() -> SamplingDefaults:
    """The official inference defaults of mit-han-lab/hart (sources in docs/convert.md)."""
    return SamplingDefaults(cfg=4.5, top_k=copy.deepcopy(HART_TOP_K), top_p=0.0, temperature=1.0, smooth=True,
                            residual=True, guided_scales=0)


def _shapes_text_encoder(width: int, depth: int, heads: int, tokens: int) -> TextEncoderConfig:
    return TextEncoderConfig(kind="small", vocab_size=len(SHAPES_WORDS) + 2, width=width, depth=depth,
                             heads=heads, max_tokens=tokens, words=tuple(SHAPES_WORDS))


def _hart_0_7b() -> HartConfig:
    patch_nums = (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64)
    return HartConfig(
        name="hart-0.7b-1024px",
        image_size=1024,
        quantizer=QuantizerConfig(vocab_size=4096, channels=32, patch_nums=patch_nums),
        vae=VaeConfig(image_size=1024, ch=160, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=32,
                      norm_groups=32),
        diffusion=DiffusionConfig(in_channels=32, width=1024, depth=6, cond_dim=1536),
        # Qwen2-1.5B (docs/hart.md §2): not built here; the converter supplies it.
        text_encoder=TextEncoderConfig(kind="qwen2", vocab_size=151936, width=1536, depth=28, heads=12,
                                       max_tokens=32768),
        width=1536, depth=24, heads=24,
        context_tokens=300, context_dim=1536,
        sampling=hart_sampling(),
        description="HART 0.7B at 1024 px (published shapes).",
    )


def _tiny() -> HartConfig:
    return HartConfig(
        name="hart-tiny",
        image_size=32,
        quantizer=QuantizerConfig(vocab_size=64, channels=8, patch_nums=(1, 2, 3, 4)),
        vae=VaeConfig(image_size=32, ch=16, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=8),
        diffusion=DiffusionConfig(in_channels=8, width=32, depth=2, cond_dim=64),
        text_encoder=_shapes_text_encoder(width=32, depth=1, heads=2, tokens=8),
        width=64, depth=2, heads=2,
        context_tokens=8, context_dim=32,
        sampling=SamplingDefaults(cfg=3.0, top_k=0, top_p=0.0, temperature=1.0, smooth=False, residual=True),
        description="Tiny HART for tests and fixtures.",
        examples=("a red circle on a blue background",),
    )


def _shapes_128() -> HartConfig:
    return HartConfig(
        name="hart-shapes-128",
        image_size=128,
        quantizer=QuantizerConfig(vocab_size=512, channels=32, patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16)),
        # Matches tools/lab/train_tokenizer.py's defaults (f8: 128 px → 16×16 latent).
        vae=VaeConfig(image_size=128, ch=32, ch_mult=(1, 1, 2, 4), num_res_blocks=1, z_channels=32),
        diffusion=DiffusionConfig(in_channels=32, width=256, depth=4, cond_dim=384),
        text_encoder=_shapes_text_encoder(width=192, depth=2, heads=3, tokens=24),
        width=384, depth=8, heads=6,
        context_tokens=24, context_dim=192,
        sampling=SamplingDefaults(cfg=4.0, top_k=0, top_p=0.0, temperature=1.0, smooth=False, residual=True),
        description="HART at 128 px for the synthetic shapes world.",
        examples=(
            "a red circle on a blue background",
            "a small yellow square on a black background",
            "a green triangle in the top left on a white background",
            "a red circle left of a blue square on a white background",
            "two purple circles on an orange background",
        ),
    )


CONFIGS = {
    "hart-0.7b-1024px": _hart_0_7b(),
    "tiny": _tiny(),
    "shapes-128": _shapes_128(),
}


def get_config(name: str) -> HartConfig:
    """A private copy of a named config (callers may edit it without touching CONFIGS)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}")
    return copy.deepcopy(CONFIGS[name])
