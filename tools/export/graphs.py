"""The ONNX graphs of a model package as PyTorch modules (docs/model-package.md §3).

Each `Graph` names its inputs and outputs with symbolic shapes; the same description drives
the export (dynamic axes) and the tests (fresh random inputs of other sizes).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from hart.model import HartModel
from hart.resample import area_matrix, bicubic_matrix
from hart.transformer import ATTENTION_KINDS

Shape = Tuple  # ints are fixed sizes, strings are symbolic (dynamic) dimensions


@dataclass
class Graph:
    key: str                                   # manifest key, e.g. "scaleUpdate"
    file: str                                  # file stem, e.g. "scale_update"
    module: nn.Module
    inputs: List[Tuple[str, str, Shape]]       # (name, dtype, shape)
    outputs: List[Tuple[str, Shape]]
    external: bool = False                     # weights in a separate .data file
    trace_dims: Dict[str, int] = field(default_factory=dict)
    fp16_io: Tuple[str, ...] = ()              # inputs/outputs that are float16 in the fp16 variant
    custom_opsets: Dict[str, int] = field(default_factory=dict)   # contrib domains the graph uses

    @property
    def input_names(self):
        return [name for name, _, _ in self.inputs]

    @property
    def output_names(self):
        return [name for name, _ in self.outputs]

    def dynamic_axes(self):
        axes = {}
        for name, shape in [(n, s) for n, _, s in self.inputs] + self.outputs:
            dyn = {i: d for i, d in enumerate(shape) if isinstance(d, str)}
            if dyn:
                axes[name] = dyn
        return axes


class TextEncoderGraph(nn.Module):
    def __init__(self, model: HartModel):
        super().__init__()
        self.text_encoder = model.text_encoder

    def forward(self, input_ids, attention_mask):
        return self.text_encoder(input_ids, attention_mask)


class ConditionGraph(nn.Module):
    """`level0` is the level-0 embedding; by default the model's own (computed by torch)."""

    def __init__(self, model: HartModel, level0: Optional[torch.Tensor] = None):
        super().__init__()
        self.transformer = model.transformer
        with torch.no_grad():
            if level0 is None:
                level0 = model.transformer.level_table()[0]
            self.register_buffer("level0", level0.detach().float().clone())

    def forward(self, context):
        return self.transformer.condition(context, self.level0)


class TransformerGraph(nn.Module):
    """One step over new tokens with the KV cache in and out, past/present interleaved per block.

    attention="fused" exports each block's attention as one com.microsoft MultiHeadAttention
    node (no score tensor on WebGPU); "plain" as MatMul/Softmax/MatMul. Same inputs and outputs.
    """

    def __init__(self, model: HartModel, attention: str = "plain"):
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {attention!r}")
        self.transformer = model.transformer
        self.fused = attention == "fused"

    def forward(self, x, rope_cos, rope_sin, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(past_flat) // 2)]
        hidden, present = self.transformer.step(x, rope_cos, rope_sin, past, fused=self.fused)
        return (hidden,) + tuple(t for kv in present for t in kv)


class HeadGraph(nn.Module):
    def __init__(self, model: HartModel):
        super().__init__()
        self.transformer = model.transformer

    def forward(self, hidden, head_cond, guidance):
        return self.transformer.guided_logits(hidden, head_cond, guidance)


class ScaleUpdateGraph(nn.Module):
    """f_hat += φ(U·tokens·Uᵀ); x_next = word_embed(flatten(A·f_hat·Aᵀ)) + level, doubled for CFG.

    The resampling matrices, the φ conv and the level row are inputs, so one graph serves
    every scale (φ differs per scale; the matrices' sizes set pn and pn').
    """

    def __init__(self, model: HartModel):
        super().__init__()
        self.transformer = model.transformer
        self.quant_resi = model.config.quantizer.quant_resi

    def forward(self, f_hat, tokens, upsample, phi_weight, phi_bias, downsample, level):
        batch, channels, pn = f_hat.shape[0], f_hat.shape[1], upsample.shape[1]
        token_map = tokens.transpose(1, 2).reshape(batch, channels, pn, pn)
        up = torch.matmul(torch.matmul(upsample, token_map), upsample.transpose(0, 1))
        conv = F.conv2d(up, phi_weight, phi_bias, padding=1)
        f_hat_next = f_hat + (up * (1.0 - self.quant_resi) + conv * self.quant_resi)
        down = torch.matmul(torch.matmul(downsample, f_hat_next), downsample.transpose(0, 1))
        x = self.transformer.scale_input(down.flatten(2).transpose(1, 2), level)
        return f_hat_next, torch.cat([x, x], dim=0)


class DiffusionHeadGraph(nn.Module):
    """One CFG-guided evaluation of the denoiser for the conditional trajectory x."""

    def __init__(self, model: HartModel):
        super().__init__()
        self.transformer = model.transformer
        self.channels = model.config.latent_channels

    def forward(self, x, t, hidden, tokens, guidance):
        z = self.transformer.diffusion_condition(hidden, tokens)
        both = torch.cat([x, x], dim=0)
        out = self.transformer.diffloss.net(both, t.expand(both.shape[0]), z)
        halves = out.reshape(2, -1, out.shape[1])
        cond, uncond = halves[0], halves[1]
        eps = (1 + guidance) * cond[:, :self.channels] - guidance * uncond[:, :self.channels]
        return eps, cond[:, self.channels:]


class DecoderGraph(nn.Module):
    def __init__(self, model: HartModel):
        super().__init__()
        self.tokenizer = model.tokenizer

    def forward(self, f_hat):
        return self.tokenizer.decode_unit(f_hat)


class EncoderGraph(nn.Module):
    """Image-to-image's way in: image [B, 3, H, W] in [0, 1] (the decoder's range) → the
    tokenizer's continuous latent f, its token maps and the discrete f_hat they add up to.

    The residual quantization (area-down the residual, nearest codeword, bicubic-up, φ, subtract,
    scale after scale) is unrolled into this graph rather than written in TypeScript: it is the
    tokenizer's own code traced, so the tokens match PyTorch's argmin decisions, and φ is a 3×3
    conv at full latent size that the engine only has as an ONNX op (scaleUpdate). `tokens`
    [B, Σ pn²] holds the maps row-major, scale after scale, as int32 (the engine's token maps);
    the continuous residual is f − f_hat.
    """

    def __init__(self, model: HartModel):
        super().__init__()
        self.tokenizer = model.tokenizer

    def forward(self, image):
        f = self.tokenizer.encode_continuous(image * 2.0 - 1.0)
        idx_list, f_hat, _ = self.tokenizer.quantize._residual_quantize(f)
        tokens = torch.cat([idx.flatten(1) for idx in idx_list], dim=1).to(torch.int32)
        return f, tokens, f_hat


class PreviewGraph(nn.Module):
    """A fitted linear latent → RGB map (1×1 conv), clamped to [0, 1]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.proj = nn.Conv2d(weight.shape[1], 3, 1)
        with torch.no_grad():
            self.proj.weight.copy_(weight[:, :, None, None])
            self.proj.bias.copy_(bias)

    def forward(self, f_hat):
        return self.proj(f_hat).clamp(0.0, 1.0)


@torch.no_grad()
def fit_preview(model: HartModel, generator: torch.Generator, count: int = 16,
                latents: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Least-squares latent → RGB map against the decoder, at the latent's resolution.

    Without given latents, it uses f_hat of random token maps (what the decoder sees during
    sampling) plus a small continuous residual.
    """
    c = model.config
    if latents is None:
        quantizer = model.tokenizer.quantize
        idx = [torch.randint(0, c.vocab_size, (count, pn, pn), generator=generator) for pn in c.patch_nums]
        latents = quantizer.indices_to_fhat(idx)
        latents = latents + 0.1 * latents.std() * torch.randn(latents.shape, generator=generator)
    image = model.tokenizer.decode_unit(latents)
    side, factor = c.latent_side, c.image_size // c.latent_side
    image = image.reshape(image.shape[0], 3, side, factor, side, factor).mean(dim=(3, 5))
    x = latents.permute(0, 2, 3, 1).reshape(-1, c.latent_channels).double()
    y = image.permute(0, 2, 3, 1).reshape(-1, 3).double()
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution                    # [Cv + 1, 3]
    return solution[:-1].t().float().contiguous(), solution[-1].float().contiguous()


def build_graphs(model: HartModel, preview: Tuple[torch.Tensor, torch.Tensor],
                 attention: str = "plain", levels: Optional[torch.Tensor] = None) -> List[Graph]:
    """`levels` [K, C] replaces the level table the condition graph's level-0 row comes from
    (the converter computes it with a fixed summation order, see convert/weight_map.py)."""
    c = model.config
    C, Cv, D, H, hd, V = c.width, c.latent_channels, c.context_dim, c.heads, c.head_dim, c.vocab_size
    past_inputs, present_outputs = [], []
    for i in range(c.depth):
        past_inputs += [(f"past_key_{i}", "float32", ("N", H, "P", hd)), (f"past_value_{i}", "float32", ("N", H, "P", hd))]
        present_outputs += [(f"present_key_{i}", ("N", H, "P_plus_L", hd)), (f"present_value_{i}", ("N", H, "P_plus_L", hd))]
    graphs = []
    if model.text_encoder is not None:
        graphs.append(Graph("textEncoder", "text_encoder", TextEncoderGraph(model),
                            [("input_ids", "int32", ("B", "S")), ("attention_mask", "int32", ("B", "S"))],
                            [("hidden", ("B", "S", D))], trace_dims={"B": 2, "S": c.context_tokens}))
    graphs += [
        Graph("condition", "condition", ConditionGraph(model, None if levels is None else levels[0]),
              [("context", "float32", ("N", "T", D))],
              [("x", ("N", "T", C)), ("head_cond", ("N", 2 * C))], trace_dims={"N": 4, "T": 5}),
        Graph("transformer", "transformer", TransformerGraph(model, attention),
              [("x", "float32", ("N", "L", C)), ("rope_cos", "float32", ("N", "L", hd)),
               ("rope_sin", "float32", ("N", "L", hd))] + past_inputs,
              [("hidden", ("N", "L", C))] + present_outputs, external=True,
              trace_dims={"N": 4, "L": 3, "P": 5},
              fp16_io=tuple(name for name, *_ in past_inputs + present_outputs),
              custom_opsets={"com.microsoft": 1} if attention == "fused" else {}),
        Graph("head", "head", HeadGraph(model),
              [("hidden", "float32", ("N", "L", C)), ("head_cond", "float32", ("N", 2 * C)),
               ("guidance", "float32", (1,))],
              [("logits", ("B", "L", V))], trace_dims={"N": 4, "L": 3}),
        Graph("scaleUpdate", "scale_update", ScaleUpdateGraph(model),
              [("f_hat", "float32", ("B", Cv, "h", "h")), ("tokens", "float32", ("B", "pn2", Cv)),
               ("upsample", "float32", ("h", "pn")), ("phi_weight", "float32", (Cv, Cv, 3, 3)),
               ("phi_bias", "float32", (Cv,)), ("downsample", "float32", ("pn_next", "h")),
               ("level", "float32", (C,))],
              [("f_hat_next", ("B", Cv, "h", "h")), ("x_next", ("N", "pn_next2", C))],
              trace_dims={"B": 2, "pn": 2, "pn_next": 3}),
        Graph("diffusionHead", "diffusion_head", DiffusionHeadGraph(model),
              [("x", "float32", ("M", Cv)), ("t", "float32", (1,)), ("hidden", "float32", ("N", "L", C)),
               ("tokens", "float32", ("B", "L", Cv)), ("guidance", "float32", (1,))],
              [("eps", ("M", Cv)), ("v", ("M", Cv))], trace_dims={"B": 2, "L": 3}),
        Graph("decoder", "decoder", DecoderGraph(model),
              [("f_hat", "float32", ("B", Cv, "h", "h"))], [("image", ("B", 3, "H", "W"))],
              trace_dims={"B": 2}),
        Graph("preview", "preview", PreviewGraph(*preview),
              [("f_hat", "float32", ("B", Cv, "h", "h"))], [("image", ("B", 3, "h", "h"))],
              trace_dims={"B": 2}),
        Graph("encoder", "encoder", EncoderGraph(model),
              [("image", "float32", ("B", 3, c.image_size, c.image_size))],
              [("f", ("B", Cv, "h", "h")), ("tokens", ("B", sum(pn * pn for pn in c.patch_nums))),
               ("f_hat", ("B", Cv, "h", "h"))],
              trace_dims={"B": 2}),
    ]
    return graphs


def sample_inputs(graph: Graph, model: HartModel, dims: Dict[str, int], generator: torch.Generator):
    """Random inputs of the sizes in dims (B, N = 2B, L, P, S, T, pn, pn_next) for one graph."""
    c = model.config
    dims = dict(dims)
    dims.setdefault("h", c.latent_side)
    if "B" in dims:
        dims.setdefault("N", 2 * dims["B"])
    if "N" in dims:
        dims.setdefault("B", dims["N"] // 2)
    dims.setdefault("M", dims.get("B", 1) * dims.get("L", 1))
    if "pn" in dims:
        dims["pn2"] = dims["pn"] ** 2
        dims.setdefault("pn_next", dims["pn"] + 1)

    def randn(*shape):
        return torch.randn(shape, generator=generator)

    special = {
        "input_ids": lambda: torch.randint(0, c.text_encoder.vocab_size, (dims["B"], dims["S"]),
                                           generator=generator, dtype=torch.int64).to(torch.int32),
        "attention_mask": lambda: _right_padded_mask(dims["B"], dims["S"], generator),
        "upsample": lambda: bicubic_matrix(dims["h"], dims["pn"]),
        "downsample": lambda: area_matrix(dims["pn_next"], dims["h"]),
        "t": lambda: torch.randint(0, c.diffusion.train_steps, (1,), generator=generator).float(),
        "guidance": lambda: torch.rand(1, generator=generator) * 4.0,
        "image": lambda: torch.rand((dims["B"], 3, c.image_size, c.image_size), generator=generator),
    }
    values = []
    for name, _, shape in graph.inputs:
        if name in special:
            values.append(special[name]())
        else:
            values.append(randn(*[dims[d] if isinstance(d, str) else d for d in shape]))
    return values


def _right_padded_mask(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    counts = torch.randint(1, length + 1, (batch,), generator=generator)
    return (torch.arange(length)[None, :] < counts[:, None]).to(torch.int32)
