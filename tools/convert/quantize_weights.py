"""Weight-only int8 / int4 variants of an exported ONNX graph (for the Qwen2 text encoder).

Qwen2-1.5B is 6.2 GB in float32; with int4 weights it is about 1 GB, which keeps HART's
package download near 2 GB. Activations stay float32, so the graph keeps float32 I/O.

- int4: every `MatMul` with a constant 2-D weight becomes ONNX Runtime's `com.microsoft`
  `MatMulNBits` (bits 4, blocks of `block_size` along K, asymmetric: a float scale and a 4-bit
  zero point per block). This is the layout ONNX Runtime's own quantizer writes and the one its
  WebGPU and CPU kernels run.
- int8: standard ops only: `DequantizeLinear` (int8, one scale per output column, axis 1)
  feeding the original `MatMul`.
- In both modes a constant embedding table read by `Gather` becomes int8 rows with one float
  scale per row: `Gather(int8) -> Cast -> Mul(Gather(scales))`.

The `dequantize_*` functions give the exact float weights the quantized graph computes with,
so a PyTorch model loaded with them must reproduce the quantized graph's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"


# ---------------------------------------------------------------------------------------------
# Numeric schemes (numpy, float32 in, quantized arrays out)


def quantize_int4_blocks(w: np.ndarray, block_size: int = 32):
    """W [K, N] -> (packed [N, blocks, block_size/2] uint8, scales [N*blocks] f32, zero points).

    Zero points are packed two per byte along the blocks of one column, low nibble first,
    each column padded to whole bytes: shape [N * ceil(blocks/2)].
    """
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    k, n = w.shape
    blocks = -(-k // block_size)
    padded = np.zeros((blocks * block_size, n), dtype=np.float32)
    padded[:k] = w
    cols = padded.T.reshape(n, blocks, block_size)
    # Asymmetric range that always contains 0, so zero weights (and padding) stay exact.
    lo = np.minimum(cols.min(axis=2), 0.0)
    hi = np.maximum(cols.max(axis=2), 0.0)
    scale = ((hi - lo) / 15.0).astype(np.float32)
    scale[scale == 0] = 1.0
    zero = np.clip(np.round(-lo / scale), 0, 15).astype(np.uint8)
    q = np.clip(np.round(cols / scale[:, :, None]) + zero[:, :, None], 0, 15).astype(np.uint8)
    packed = (q[:, :, 0::2] | (q[:, :, 1::2] << 4)).astype(np.uint8)
    zero_cols = np.zeros((n, blocks + (blocks & 1)), dtype=np.uint8)
    zero_cols[:, :blocks] = zero
    zero_packed = (zero_cols[:, 0::2] | (zero_cols[:, 1::2] << 4)).reshape(-1).astype(np.uint8)
    return packed, scale.reshape(-1), zero_packed


def dequantize_int4_blocks(packed: np.ndarray, scales: np.ndarray, zero_packed: np.ndarray, k: int) -> np.ndarray:
    """The float32 W [K, N] that MatMulNBits computes with."""
    n, blocks, half = packed.shape
    q = np.empty((n, blocks, half * 2), dtype=np.float32)
    q[:, :, 0::2] = packed & 0x0F
    q[:, :, 1::2] = packed >> 4
    zero_cols = np.empty((n, zero_packed.size // n * 2), dtype=np.float32)
    zp = zero_packed.reshape(n, -1)
    zero_cols[:, 0::2] = zp & 0x0F
    zero_cols[:, 1::2] = zp >> 4
    zero = zero_cols[:, :blocks]
    w = (q - zero[:, :, None]) * scales.reshape(n, blocks)[:, :, None]
    return w.reshape(n, blocks * half * 2)[:, :k].T.astype(np.float32)


def quantize_int8_columns(w: np.ndarray):
    """W [K, N] -> (int8 [K, N], scales [N]): symmetric, one scale per output column."""
    scale = (np.abs(w).max(axis=0) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale


def dequantize_int8_columns(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) * scale[None, :]).astype(np.float32)


def quantize_int8_rows(table: np.ndarray):
    """Embedding [V, D] -> (int8 [V, D], scales [V]): symmetric, one scale per row."""
    q_t, scale = quantize_int8_columns(table.T)
    return np.ascontiguousarray(q_t.T), scale


def dequantize_int8_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) * scale[:, None]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Graph rewriting


@dataclass
class QuantizeReport:
    bits: int
    block_size: int
    # initializer name -> "matmul" | "embedding"
    quantized: Dict[str, str] = field(default_factory=dict)
    # new initializer name -> (float weight it was made from, scheme, part): how each quantized
    # tensor derives from a float one (scheme "int4" | "int8cols" | "int8rows" | "zeros", part
    # "weight" | "scales" | "zeros" | "scale"), for the weight map of convert/skeleton.py.
    parts: Dict[str, Tuple[str, str, str]] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0


def _consumers(graph) -> Dict[str, List[onnx.NodeProto]]:
    users: Dict[str, List[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def quantize_model(model: onnx.ModelProto, bits: int, block_size: int = 32,
                   min_elements: int = 1024, base_dir: Optional[str] = None) -> QuantizeReport:
    """Rewrite `model` in place. Weights with fewer than `min_elements` entries stay float.

    `base_dir` is the folder of the model's external-data files, if its weights are external
    (as torch.onnx.export writes a graph over 2 GB): they are read one tensor at a time.
    """
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    users = _consumers(graph)
    report = QuantizeReport(bits=bits, block_size=block_size)
    new_nodes: List[onnx.NodeProto] = []
    new_inits: List[onnx.TensorProto] = []
    dropped = set()

    for node in graph.node:
        weight_name = _quantizable_weight(node, inits, users, min_elements)
        if weight_name is None:
            new_nodes.append(node)
            continue
        w = _array(inits[weight_name], base_dir)
        if node.op_type == "Gather":
            new_nodes.extend(_embedding_nodes(node, weight_name, w, new_inits, report))
        elif bits == 4:
            new_nodes.append(_matmul_nbits_node(node, weight_name, w, block_size, new_inits, report))
        else:
            new_nodes.extend(_dequantize_matmul_nodes(node, weight_name, w, new_inits, report))
        report.bytes_before += w.nbytes
        dropped.add(weight_name)

    kept = [init for init in graph.initializer if init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    report.bytes_after = sum(len(t.raw_data) for t in new_inits)
    del graph.node[:]
    graph.node.extend(new_nodes)
    if bits == 4 and not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return report


def _array(tensor: onnx.TensorProto, base_dir: Optional[str]) -> np.ndarray:
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        info = {e.key: e.value for e in tensor.external_data}
        if base_dir is None:
            raise ValueError(f"weight {tensor.name} is in external data but no base folder was given")
        count = int(np.prod(tensor.dims))
        with open(os.path.join(base_dir, info["location"]), "rb") as f:
            f.seek(int(info.get("offset", 0)))
            return np.frombuffer(f.read(count * 4), dtype="<f4").reshape(tuple(tensor.dims)).copy()
    return numpy_helper.to_array(tensor).astype(np.float32)


def _quantizable_weight(node, inits, users, min_elements):
    """The name of a constant weight this node reads that can be quantized, else None."""
    if node.op_type == "MatMul":
        name = node.input[1]
    elif node.op_type == "Gather":
        name = node.input[0]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if axis != 0:
            return None
    else:
        return None
    init = inits.get(name)
    if init is None or len(init.dims) != 2 or init.data_type != onnx.TensorProto.FLOAT:
        return None
    if init.dims[0] * init.dims[1] < min_elements:
        return None
    # A weight shared with other nodes (or read twice) keeps its float copy: skip it.
    if len(users.get(name, [])) != 1:
        return None
    return name


def _embedding_nodes(node, name, table, new_inits, report):
    q, scale = quantize_int8_rows(table)
    qname, sname = name + "_int8", name + "_rowscale"
    new_inits += [numpy_helper.from_array(q, qname), numpy_helper.from_array(scale, sname)]
    report.quantized[name] = "embedding"
    report.parts.update({qname: (name, "int8rows", "weight"), sname: (name, "int8rows", "scale")})
    ids, out = node.input[1], node.output[0]
    base = node.name or out
    return [
        _constant_axes(out + "_axes", base),
        helper.make_node("Gather", [qname, ids], [out + "_q"], name=base + "_q", axis=0),
        helper.make_node("Cast", [out + "_q"], [out + "_f"], name=base + "_cast", to=onnx.TensorProto.FLOAT),
        helper.make_node("Gather", [sname, ids], [out + "_s"], name=base + "_scale", axis=0),
        helper.make_node("Unsqueeze", [out + "_s", out + "_axes"], [out + "_s1"], name=base + "_unsq"),
        helper.make_node("Mul", [out + "_f", out + "_s1"], [out], name=base + "_deq"),
    ]


def _constant_axes(name, base):
    return helper.make_node("Constant", [], [name], name=base + "_axes",
                            value=numpy_helper.from_array(np.array([-1], dtype=np.int64)))


def _matmul_nbits_node(node, name, w, block_size, new_inits, report):
    k, n = w.shape
    packed, scales, zeros = quantize_int4_blocks(w, block_size)
    names = [name + "_q4", name + "_scales", name + "_zp"]
    new_inits += [numpy_helper.from_array(packed, names[0]), numpy_helper.from_array(scales, names[1]),
                  numpy_helper.from_array(zeros, names[2])]
    report.quantized[name] = "matmul"
    report.parts.update({names[0]: (name, "int4", "weight"), names[1]: (name, "int4", "scales"),
                         names[2]: (name, "int4", "zeros")})
    return helper.make_node("MatMulNBits", [node.input[0]] + names, list(node.output),
                            name=(node.name or node.output[0]) + "_q4", domain=MS_DOMAIN,
                            K=k, N=n, bits=4, block_size=block_size, accuracy_level=0)


def _dequantize_matmul_nodes(node, name, w, new_inits, report):
    q, scale = quantize_int8_columns(w)
    qname, sname, zname = name + "_int8", name + "_colscale", name + "_zero"
    new_inits += [numpy_helper.from_array(q, qname), numpy_helper.from_array(scale, sname),
                  numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), zname)]
    report.quantized[name] = "matmul"
    report.parts.update({qname: (name, "int8cols", "weight"), sname: (name, "int8cols", "scale"),
                         zname: (name, "zeros", "")})
    base = node.name or node.output[0]
    return [
        helper.make_node("DequantizeLinear", [qname, sname, zname], [name + "_deq"], name=base + "_deq", axis=1),
        helper.make_node("MatMul", [node.input[0], name + "_deq"], list(node.output), name=base),
    ]


def fake_quantized_linear(weight, bits: int, block_size: int = 32) -> np.ndarray:
    """A torch `nn.Linear` weight [N, K] replaced by what the quantized graph computes with."""
    w_t = np.ascontiguousarray(weight.detach().float().numpy().T)
    if bits == 4:
        return dequantize_int4_blocks(*quantize_int4_blocks(w_t, block_size), k=w_t.shape[0]).T.copy()
    return dequantize_int8_columns(*quantize_int8_columns(w_t)).T.copy()


def fake_quantized_embedding(table) -> np.ndarray:
    return dequantize_int8_rows(*quantize_int8_rows(table.detach().float().numpy()))
