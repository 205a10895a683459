"""fp16 variants of exported graphs: float16 weights and compute inside, float32 inputs and outputs.

torch 1.13 cannot trace half-precision models on CPU, so the conversion works on the fp32
ONNX graph: every float tensor becomes float16, float inputs are cast on entry and float
outputs cast back on exit (the package contract keeps float32 I/O). Two kinds of nodes stay in
float32: normalisation statistics (x² overflows float16 for |x| > 256, and HART's own RMSNorm
kernel accumulates in float32 too) and the diffusion timestep sinusoid (t up to 999 times a
frequency near 1 needs more than float16's 11 bits before cos/sin).

`half_io` names graph inputs and outputs that are float16 themselves instead (the transformer
step's KV cache: past_* in, present_* out, so the cache stays float16 between steps and no
cast copies it each step).

`weights_only=True` gives the fallback variant: float16-stored weights cast to float32 at load,
float32 compute (for runtimes without float16 kernels).
"""
from typing import Callable, Collection, Dict, Set, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16

# Ops whose float outputs are computed in float32 when they belong to a normalisation.
_NORM_OPS = {"ReduceMean", "Pow", "Sqrt", "Reciprocal", "Add", "Sub", "Mul", "Div", "Cast", "Constant", "Reshape"}
_SINUSOID_OPS = {"Cast", "Unsqueeze", "Mul", "Cos", "Sin", "Concat", "Constant"}


def keeps_fp32(node: onnx.NodeProto) -> bool:
    """Whether a node of an exported HART graph must compute in float32.

    torch.onnx names nodes after their module path ("/blocks.0/ln_wo_grad/ReduceMean"); every
    norm module in HART has "norm" or "ln" in its name, and the diffusion head's sinusoid runs
    directly in the `time_embed` module (its MLP is in the child `time_embed/mlp`).
    """
    scope = node.name.rsplit("/", 1)[0].lower()
    leaf = scope.rsplit("/", 1)[-1]
    if "norm" in leaf or leaf.startswith("ln") or leaf.endswith("_ln"):
        return node.op_type in _NORM_OPS
    if leaf == "time_embed":
        return node.op_type in _SINUSOID_OPS
    return False


def to_fp16(model: onnx.ModelProto, weights_only: bool = False,
            keep_fp32: Callable[[onnx.NodeProto], bool] = keeps_fp32,
            half_io: Collection[str] = ()) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if weights_only:
        if half_io:
            raise ValueError("half_io needs float16 compute (weights_only=False)")
        _store_weights_as_fp16(model)
    else:
        _Converter(model, keep_fp32, set(half_io)).run()
    onnx.checker.check_model(model)
    return model


def _store_weights_as_fp16(model: onnx.ModelProto) -> None:
    graph = model.graph
    casts = []
    for tensor in graph.initializer:
        if tensor.data_type != FLOAT:
            continue
        name = tensor.name
        half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), name + "__fp16")
        tensor.CopyFrom(half)
        casts.append(helper.make_node("Cast", [name + "__fp16"], [name], to=FLOAT, name=name + "__to_fp32"))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


class _Converter:
    def __init__(self, model: onnx.ModelProto, keep_fp32: Callable[[onnx.NodeProto], bool],
                 half_io: Set[str] = frozenset()):
        self.model = model
        self.graph = model.graph
        self.keep_fp32 = keep_fp32
        self.half_io = half_io
        inferred = onnx.shape_inference.infer_shapes(model)
        self.types: Dict[str, int] = {}
        for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            self.types[value.name] = value.type.tensor_type.elem_type
        for tensor in self.graph.initializer:
            self.types[tensor.name] = tensor.data_type
        self.storage: Dict[str, int] = {}          # float tensors: the type they are stored in
        self.casts: Dict[Tuple[str, int], str] = {}
        self.new_nodes = []

    def is_float(self, name: str) -> bool:
        return self.types.get(name) == FLOAT

    def run(self) -> None:
        graph = self.graph
        fp32_consumers = self._initializers_only_read_in_fp32()
        names = {v.name for v in graph.input} | {v.name for v in graph.output}
        unknown = self.half_io - names
        if unknown:
            raise ValueError(f"half_io names no graph input or output: {', '.join(sorted(unknown))}")
        for value in graph.input:
            if self.is_float(value.name) and value.name in self.half_io:
                value.type.tensor_type.elem_type = HALF
                self.storage[value.name] = HALF
            elif self.is_float(value.name):
                self.storage[value.name] = FLOAT
        for tensor in graph.initializer:
            if tensor.data_type == FLOAT and tensor.name not in fp32_consumers:
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
                self.storage[tensor.name] = HALF
            elif tensor.data_type == FLOAT:
                self.storage[tensor.name] = FLOAT

        for node in list(graph.node):
            want = FLOAT if self.keep_fp32(node) else HALF
            for i, name in enumerate(node.input):
                if name and self.is_float(name) and self.storage.get(name, want) != want:
                    node.input[i] = self._cast(name, want)
            if want == HALF:
                self._retype_attributes(node)
            for name in node.output:
                if self.is_float(name):
                    self.storage[name] = want
            self.new_nodes.append(node)

        for value in graph.output:
            if not self.is_float(value.name):
                continue
            if value.name in self.half_io:
                value.type.tensor_type.elem_type = HALF
                if self.storage.get(value.name) == FLOAT:
                    self._cast_output(value.name, HALF)
            elif self.storage.get(value.name) == HALF:
                self._cast_output(value.name, FLOAT)
        del graph.node[:]
        graph.node.extend(self.new_nodes)
        del graph.value_info[:]

    def _initializers_only_read_in_fp32(self) -> Set[str]:
        readers: Dict[str, Set[bool]] = {}
        for node in self.graph.node:
            keep = self.keep_fp32(node)
            for name in node.input:
                readers.setdefault(name, set()).add(keep)
        return {name for name, kinds in readers.items() if kinds == {True}}

    def _cast(self, name: str, to: int) -> str:
        key = (name, to)
        if key not in self.casts:
            out = f"{name}__as_{'fp32' if to == FLOAT else 'fp16'}"
            self.new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=out))
            self.casts[key] = out
        return self.casts[key]

    def _retype_attributes(self, node: onnx.NodeProto) -> None:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = HALF
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))

    def _cast_output(self, name: str, to: int) -> None:
        inner = f"{name}__{'fp16' if to == FLOAT else 'fp32'}"
        for node in self.new_nodes:
            for i, out in enumerate(node.output):
                if out == name:
                    node.output[i] = inner
            for i, inp in enumerate(node.input):
                if inp == name:
                    node.input[i] = inner
        self.new_nodes.append(helper.make_node("Cast", [inner], [name], to=to,
                                               name=f"{name}__to_{'fp32' if to == FLOAT else 'fp16'}"))
