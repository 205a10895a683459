"""Weight maps: how every weight-derived byte of a package is computed from the published tensors.

An expression (JSON, docs/model-package.md "Skeletons and weight maps") names a published
tensor and the transforms the conversion applies to it: transpose, reshape, slice, concat,
zeros, literal constants, float16 rounding, the int4/int8 quantization parts of
convert/quantize_weights.py, the level embedding and the fitted preview map. `evaluate` computes
one; `Explainer` finds the expression of an exported tensor by tracing a model whose every
weight element holds a distinct float32 bit pattern, so each exported element names the
source element it was copied from.
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from convert.quantize_weights import quantize_int4_blocks, quantize_int8_columns, quantize_int8_rows

Expr = dict

DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "int8": np.dtype("i1"),
          "uint8": np.dtype("u1"), "int32": np.dtype("<i4"), "int64": np.dtype("<i8")}


class WeightMapError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# The level embedding with a fixed order of operations


def level_embedding(sinusoid: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
                    b2: np.ndarray) -> np.ndarray:
    """HART's level MLP, Linear(256, C) -> SiLU -> Linear(C, C), over float32 sinusoid rows.

    A BLAS matrix product sums in an order of its own choosing; this one is spelled out so that
    any implementation gets the same float32 bits: every step in float64, each dot product
    summed from index 0 upwards starting at +0.0, the bias added after the sum, SiLU as
    h / (1 + exp(-h)), one rounding to float32 at the very end.
    """
    s = np.asarray(sinusoid, dtype=np.float32).astype(np.float64)
    w1, b1 = np.asarray(w1, np.float32).astype(np.float64), np.asarray(b1, np.float32).astype(np.float64)
    w2, b2 = np.asarray(w2, np.float32).astype(np.float64), np.asarray(b2, np.float32).astype(np.float64)
    h = np.zeros((s.shape[0], w1.shape[0]), dtype=np.float64)
    for i in range(w1.shape[1]):
        h += s[:, i:i + 1] * w1[None, :, i]
    h = h + b1[None, :]
    with np.errstate(over="ignore"):
        a = h / (1.0 + np.exp(-h))
    out = np.zeros((s.shape[0], w2.shape[0]), dtype=np.float64)
    for i in range(w2.shape[1]):
        out += a[:, i:i + 1] * w2[None, :, i]
    return (out + b2[None, :]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Evaluation


class Context:
    """What expressions read: published tensors, the skeleton's constants.bin, the preview map."""

    def __init__(self, source: Callable[[str, str], np.ndarray], constants: bytes = b"",
                 preview: Optional[Callable[[], Tuple[np.ndarray, np.ndarray]]] = None):
        self.source = source
        self.constants = constants
        self._preview = preview
        self._preview_value = None

    def preview(self) -> Tuple[np.ndarray, np.ndarray]:
        if self._preview_value is None:
            if self._preview is None:
                raise WeightMapError("the weight map needs the preview map but none was given")
            self._preview_value = self._preview()
        return self._preview_value


def evaluate(expr: Expr, ctx: Context) -> np.ndarray:
    if "source" in expr:
        return np.asarray(ctx.source(expr["source"], expr["key"]), dtype=np.float32)
    op = expr["op"]
    if op == "transpose":
        return np.transpose(evaluate(expr["x"], ctx), expr["perm"])
    if op == "reshape":
        return np.reshape(evaluate(expr["x"], ctx), expr["shape"])
    if op == "slice":
        x = evaluate(expr["x"], ctx)
        index = [slice(None)] * x.ndim
        index[expr["axis"]] = slice(expr["start"], expr["end"])
        return x[tuple(index)]
    if op == "concat":
        return np.concatenate([evaluate(x, ctx) for x in expr["xs"]], axis=expr["axis"])
    if op == "zeros":
        return np.zeros(expr["shape"], dtype=DTYPES[expr.get("dtype", "float32")])
    if op == "constant":
        data = ctx.constants[expr["offset"]:expr["offset"] + expr["length"]]
        return np.frombuffer(data, dtype=DTYPES[expr["dtype"]]).reshape(expr["shape"])
    if op == "fp16":
        return evaluate(expr["x"], ctx).astype(np.float16)
    if op == "int4":
        packed, scales, zeros = quantize_int4_blocks(_matrix(expr, ctx), expr["block"])
        return {"weight": packed, "scales": scales, "zeros": zeros}[expr["part"]]
    if op == "int8cols":
        q, scale = quantize_int8_columns(_matrix(expr, ctx))
        return {"weight": q, "scale": scale}[expr["part"]]
    if op == "int8rows":
        q, scale = quantize_int8_rows(_matrix(expr, ctx))
        return {"weight": q, "scale": scale}[expr["part"]]
    if op == "levelEmbed":
        return level_embedding(*(evaluate(expr[k], ctx) for k in ("sinusoid", "w1", "b1", "w2", "b2")))
    if op == "preview":
        weight, bias = ctx.preview()
        return np.asarray({"weight": weight, "bias": bias}[expr["part"]], dtype=np.float32)
    raise WeightMapError(f"unknown op {op!r}")


def _matrix(expr: Expr, ctx: Context) -> np.ndarray:
    return np.ascontiguousarray(evaluate(expr["x"], ctx), dtype=np.float32)


def tensor_bytes(expr: Expr, ctx: Context, dtype: str, shape: Sequence[int]) -> bytes:
    value = evaluate(expr, ctx)
    if value.dtype != DTYPES[dtype] or value.size != int(np.prod(shape, dtype=np.int64)):
        raise WeightMapError(f"expression gives {value.dtype} {list(value.shape)}, the tensor is {dtype} {list(shape)}")
    return np.ascontiguousarray(value).tobytes()


# ---------------------------------------------------------------------------------------------
# Finding expressions


ONE_BITS = 0x3F800000        # 1.0f
INF_BITS = 0x7F800000
SMALLEST_NORMAL_BITS = 0x00800000


class Pool:
    """Distinct float32 values for every element of every source tensor, in a fixed order.

    Element g holds the float32 whose bits are `base + g`: positive, finite and normal, from
    1.0 upwards when they fit below infinity, else starting lower (about 2.1e9 values in all).
    """

    def __init__(self, tensors: Sequence[Tuple[str, str, Tuple[int, ...]]]):
        self.entries = list(tensors)
        sizes = [int(np.prod(shape, dtype=np.int64)) for _, _, shape in self.entries]
        self.starts = np.cumsum([0] + sizes)[:-1].astype(np.int64)
        self.total = int(sum(sizes))
        self.base = min(ONE_BITS, INF_BITS - self.total)
        if self.base < SMALLEST_NORMAL_BITS:
            raise WeightMapError(f"{self.total} weights do not fit the distinct-value pool")
        self.index = {(s, k): i for i, (s, k, _) in enumerate(self.entries)}

    def value(self, index: int) -> np.ndarray:
        _, _, shape = self.entries[index]
        bits = np.arange(int(self.starts[index]), int(self.starts[index]) + int(np.prod(shape, dtype=np.int64)),
                         dtype=np.int64) + self.base
        return bits.astype(np.uint32).view(np.float32).reshape(shape)

    def explain(self, array: np.ndarray) -> Optional[Expr]:
        """The expression that copies `array` (float32) out of the pool's sources, or None."""
        array = np.asarray(array)
        if array.dtype != np.float32:
            return None
        bits = array.view(np.uint32).astype(np.int64)
        g = bits - self.base
        zero = bits == 0
        inside = (g >= 0) & (g < self.total)
        if not np.all(inside | zero):
            return None
        src = np.searchsorted(self.starts, np.where(zero, 0, g), side="right") - 1
        src = np.where(zero, -1, src)
        return self._decompose(src, g, tuple(array.shape))

    def _decompose(self, src: np.ndarray, g: np.ndarray, shape: Tuple[int, ...]) -> Optional[Expr]:
        first = src.flat[0] if src.size else -1
        if src.size == 0 or np.all(src == first):
            if first == -1:
                return {"op": "zeros", "shape": list(shape)}
            return self._single(int(first), g - self.starts[first], shape)
        for axis in range(src.ndim):
            moved = np.moveaxis(src, axis, 0).reshape(src.shape[axis], -1)
            per = moved[:, 0]
            if not np.all(moved == per[:, None]):
                continue
            cuts = [0] + [i for i in range(1, len(per)) if per[i] != per[i - 1]] + [len(per)]
            parts = []
            for a, b in zip(cuts, cuts[1:]):
                index = [slice(None)] * src.ndim
                index[axis] = slice(a, b)
                sub_shape = list(shape)
                sub_shape[axis] = b - a
                part = self._decompose(src[tuple(index)], g[tuple(index)], tuple(sub_shape))
                if part is None:
                    break
                parts.append(part)
            else:
                return {"op": "concat", "axis": axis, "xs": parts}
        return None

    def _single(self, index: int, local: np.ndarray, shape: Tuple[int, ...]) -> Optional[Expr]:
        source, key, src_shape = self.entries[index]
        expr: Expr = {"source": source, "key": key}
        coords = np.unravel_index(local.ravel(), src_shape) if src_shape else ()
        lo = [int(c.min()) for c in coords]
        hi = [int(c.max()) + 1 for c in coords]
        block = [b - a for a, b in zip(lo, hi)]
        if int(np.prod(block, dtype=np.int64)) != local.size:
            return None
        for axis, (a, b) in enumerate(zip(lo, hi)):
            if (a, b) != (0, src_shape[axis]):
                expr = {"op": "slice", "axis": axis, "start": a, "end": b, "x": expr}
        flat = np.ravel_multi_index(tuple(c - a for c, a in zip(coords, lo)), block) if block else np.zeros(1, np.int64)
        ident = np.arange(local.size, dtype=np.int64).reshape(block)
        perms = [tuple(range(len(block)))] + [p for p in itertools.permutations(range(len(block)))
                                             if p != tuple(range(len(block)))]
        for perm in perms:
            if np.array_equal(np.transpose(ident, perm).ravel(), flat):
                if perm != tuple(range(len(block))):
                    expr = {"op": "transpose", "perm": list(perm), "x": expr}
                if [block[p] for p in perm] != list(shape):
                    expr = {"op": "reshape", "shape": list(shape), "x": expr}
                return expr
        return None


def sources_of(expr: Expr) -> List[Tuple[str, str]]:
    """Every (source, key) an expression reads."""
    if "source" in expr:
        return [(expr["source"], expr["key"])]
    out = []
    for k, v in expr.items():
        if isinstance(v, dict):
            out += sources_of(v)
        elif k == "xs":
            for x in v:
                out += sources_of(x)
    return out
