"""Reading and writing `.safetensors` files without the `safetensors` package.

The format: an 8-byte little-endian header length N, N bytes of JSON (tensor name ->
{dtype, shape, data_offsets [begin, end)} relative to the end of the header, plus an optional
`__metadata__` dict of strings), then the raw little-endian tensor bytes.

Reading maps the file (`numpy.memmap`) so that a multi-gigabyte checkpoint is not read into
memory at once: tensors are materialised one by one on `get`.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Dict, Iterable, Iterator, Mapping, Optional, Tuple

import numpy as np
import torch

# safetensors dtype name -> (numpy storage dtype, torch dtype). BF16 has no numpy type: it is
# read as int16 (torch.from_numpy has no uint16) and re-viewed as torch.bfloat16.
_DTYPES: Dict[str, Tuple[np.dtype, torch.dtype]] = {
    "F64": (np.dtype("<f8"), torch.float64),
    "F32": (np.dtype("<f4"), torch.float32),
    "F16": (np.dtype("<f2"), torch.float16),
    "BF16": (np.dtype("<i2"), torch.bfloat16),
    "I64": (np.dtype("<i8"), torch.int64),
    "I32": (np.dtype("<i4"), torch.int32),
    "I16": (np.dtype("<i2"), torch.int16),
    "I8": (np.dtype("i1"), torch.int8),
    "U8": (np.dtype("u1"), torch.uint8),
    "BOOL": (np.dtype("?"), torch.bool),
}
_NAMES_BY_TORCH = {torch_dtype: name for name, (_, torch_dtype) in _DTYPES.items()}

# A header larger than this is not a safetensors file (the reference implementation uses 100 MB).
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file, with the reason in words."""


def _element_count(shape) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


class SafetensorsFile:
    """Lazy, read-only view of one `.safetensors` file."""

    def __init__(self, path: str):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise SafetensorsError(f"{path}: too short for a safetensors header")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > _MAX_HEADER or 8 + header_len > size:
                raise SafetensorsError(f"{path}: header length {header_len} does not fit the file")
            try:
                header = json.loads(f.read(header_len).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise SafetensorsError(f"{path}: header is not JSON ({err})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: header is not a JSON object")
        self.metadata: Dict[str, str] = header.pop("__metadata__", None) or {}
        self._data_start = 8 + header_len
        self._data_len = size - self._data_start
        self._entries: Dict[str, dict] = {}
        for name, entry in header.items():
            self._entries[name] = self._check_entry(name, entry)
        self._map: Optional[np.memmap] = None

    def _check_entry(self, name: str, entry) -> dict:
        if not isinstance(entry, dict) or {"dtype", "shape", "data_offsets"} - set(entry):
            raise SafetensorsError(f"{self.path}: entry {name!r} lacks dtype/shape/data_offsets")
        if entry["dtype"] not in _DTYPES:
            raise SafetensorsError(f"{self.path}: tensor {name!r} has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        expected = _element_count(entry["shape"]) * _DTYPES[entry["dtype"]][0].itemsize
        if not 0 <= begin <= end <= self._data_len or end - begin != expected:
            raise SafetensorsError(
                f"{self.path}: tensor {name!r} offsets [{begin}, {end}) do not match its shape "
                f"{entry['shape']} ({entry['dtype']}) inside {self._data_len} data bytes"
            )
        return entry

    def keys(self) -> Iterable[str]:
        return self._entries.keys()

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def shape(self, name: str) -> Tuple[int, ...]:
        return tuple(int(d) for d in self._entries[name]["shape"])

    def dtype(self, name: str) -> str:
        return self._entries[name]["dtype"]

    def get(self, name: str) -> torch.Tensor:
        """The tensor as a fresh torch tensor (a copy, so the file can be closed)."""
        entry = self._entries[name]
        np_dtype, torch_dtype = _DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        shape = tuple(int(d) for d in entry["shape"])
        if end == begin:
            return torch.zeros(shape, dtype=torch_dtype)
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self._data_start,
                                  shape=(self._data_len,))
        array = np.array(self._map[begin:end]).view(np_dtype).reshape(shape)
        tensor = torch.from_numpy(array)
        if torch_dtype == torch.bfloat16:
            tensor = tensor.view(torch.bfloat16)
        return tensor

    def items(self) -> Iterator[Tuple[str, torch.Tensor]]:
        for name in self._entries:
            yield name, self.get(name)


def load_file(path: str) -> Dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, in header order."""
    return dict(SafetensorsFile(path).items())


def save_file(tensors: Mapping[str, torch.Tensor], path: str,
              metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write tensors in the safetensors layout (header padded to 8 bytes like the reference)."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.dtype not in _NAMES_BY_TORCH:
            raise SafetensorsError(f"cannot store {name!r}: dtype {tensor.dtype} has no safetensors name")
        if tensor.dtype == torch.bfloat16:
            raw = tensor.view(torch.int16).numpy().tobytes()
        else:
            raw = tensor.numpy().astype(_DTYPES[_NAMES_BY_TORCH[tensor.dtype]][0], copy=False).tobytes()
        header[name] = {"dtype": _NAMES_BY_TORCH[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for raw in blobs:
            f.write(raw)
