"""Save an ONNX graph with its weights in external-data shards.

Browsers cap one ArrayBuffer near 2 GB and onnxruntime-web hands each external-data file to
the session as one buffer (docs/onnxruntime-web.md §2), and a download should resume file by
file. So the weights go to `<graph>.data`, `<graph>.data1`, `<graph>.data2`, … (the
exporter's naming, docs/model-package.md §1) of about `shard_bytes` each (50–200 MB), in
initializer order. A tensor larger than a shard gets a shard of its
own; no shard holds more than 2 GB, and no single tensor may exceed 1 GiB (a WebGPU buffer
limit on common adapters).
"""

from __future__ import annotations

import os
from typing import Collection, List, Optional

import onnx
from onnx import TensorProto

MAX_FILE_BYTES = 2 * 10**9   # below Chrome's ArrayBuffer cap (0x7fe00000 ≈ 2.14e9)
MAX_TENSOR_BYTES = 1 << 30   # 1 GiB
ALIGN = 4096                 # offsets page-aligned so runtimes may map them


class ShardError(ValueError):
    pass


def tensor_bytes(tensor: TensorProto, base_dir: Optional[str]) -> bytes:
    """The raw little-endian bytes of an initializer, wherever they live now."""
    if tensor.data_location == TensorProto.EXTERNAL:
        info = {e.key: e.value for e in tensor.external_data}
        if base_dir is None:
            raise ShardError(f"tensor {tensor.name} is external but no base folder was given")
        with open(os.path.join(base_dir, info["location"]), "rb") as f:
            f.seek(int(info.get("offset", 0)))
            length = int(info["length"]) if "length" in info else -1
            return f.read(length)
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    return onnx.numpy_helper.to_array(tensor).tobytes()


def save_sharded(model: onnx.ModelProto, path: str, shard_bytes: int = 100 * 2**20,
                 min_external_bytes: int = 1024, base_dir: Optional[str] = None,
                 external_names: Collection[str] = ()) -> List[str]:
    """Write `model` to `path` with tensors >= min_external_bytes, and every tensor named in
    `external_names` whatever its size, in shards; return shard file names.

    `external_names` is how a converter keeps every weight-derived byte out of the graph file
    (a model package can then be rebuilt from its graph files plus the published weights).
    `base_dir` is where already-external tensors of `model` can be read (e.g. the folder
    torch.onnx.export wrote them to). The model is modified in place.
    """
    external_names = frozenset(external_names)
    if shard_bytes > MAX_FILE_BYTES:
        raise ShardError(f"shard_bytes {shard_bytes} exceeds the 2 GB file limit")
    folder = os.path.dirname(os.path.abspath(path))
    stem = os.path.basename(path)
    names: List[str] = []
    handle = None
    used = 0
    try:
        for tensor in model.graph.initializer:
            raw = tensor_bytes(tensor, base_dir)
            if len(raw) > MAX_TENSOR_BYTES:
                raise ShardError(f"tensor {tensor.name} is {len(raw)} bytes, over the 1 GiB limit")
            if len(raw) < min_external_bytes and tensor.name not in external_names:
                if tensor.data_location == TensorProto.EXTERNAL:
                    tensor.data_location = TensorProto.DEFAULT
                    del tensor.external_data[:]
                    tensor.raw_data = raw
                continue
            start = used + (-used % ALIGN)
            if handle is None or (used > 0 and start + len(raw) > shard_bytes):
                if handle is not None:
                    handle.close()
                names.append(f"{stem}.data" + (str(len(names)) if names else ""))
                handle = open(os.path.join(folder, names[-1]), "wb")
                used, start = 0, 0
            handle.write(b"\0" * (start - used))
            handle.write(raw)
            used = start + len(raw)
            tensor.ClearField("raw_data")
            for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                tensor.ClearField(field)
            del tensor.external_data[:]
            for key, value in (("location", names[-1]), ("offset", str(start)), ("length", str(len(raw)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            tensor.data_location = TensorProto.EXTERNAL
    finally:
        if handle is not None:
            handle.close()
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return names
