import json
import os
import struct
import tempfile
import unittest

import numpy as np
import torch

from convert.safetensors import SafetensorsError, SafetensorsFile, load_file, save_file


def _raw_file(path, header, data):
    """A safetensors file assembled by hand, independent of save_file."""
    encoded = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        f.write(data)


class SafetensorsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_reads_hand_built_file(self):
        a = np.arange(6, dtype="<f4").reshape(2, 3) * 0.5
        b = np.array([-3, 7], dtype="<i8")
        c = np.array([1.5, -2.25], dtype="<f2")
        data = a.tobytes() + b.tobytes() + c.tobytes()
        header = {
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
            "c": {"dtype": "F16", "shape": [2], "data_offsets": [40, 44]},
        }
        _raw_file(self.path("x.safetensors"), header, data)
        f = SafetensorsFile(self.path("x.safetensors"))
        self.assertEqual(f.metadata, {"format": "pt"})
        self.assertEqual(list(f.keys()), ["a", "b", "c"])
        self.assertEqual(f.shape("a"), (2, 3))
        self.assertTrue(torch.equal(f.get("a"), torch.tensor(a)))
        self.assertEqual(f.get("b").tolist(), [-3, 7])
        self.assertEqual(f.get("c").dtype, torch.float16)
        self.assertEqual(f.get("c").tolist(), [1.5, -2.25])

    def test_bf16_bits_are_decoded(self):
        # 0x3FC0 is 1.5 in bfloat16, 0xC040 is -3.0
        data = struct.pack("<HH", 0x3FC0, 0xC040)
        _raw_file(self.path("bf.safetensors"), {"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, data)
        w = load_file(self.path("bf.safetensors"))["w"]
        self.assertEqual(w.dtype, torch.bfloat16)
        self.assertEqual(w.float().tolist(), [1.5, -3.0])

    def test_round_trip_every_dtype(self):
        g = torch.Generator().manual_seed(0)
        tensors = {
            "f32": torch.randn(3, 4, generator=g),
            "f16": torch.randn(5, generator=g).half(),
            "bf16": torch.randn(2, 2, generator=g).bfloat16(),
            "f64": torch.randn(2, generator=g).double(),
            "i32": torch.tensor([1, -2, 3], dtype=torch.int32),
            "i8": torch.tensor([-128, 127], dtype=torch.int8),
            "u8": torch.tensor([0, 255], dtype=torch.uint8),
            "bool": torch.tensor([True, False]),
            "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 3),
            "noncontig": torch.arange(12.0).reshape(3, 4).t(),
        }
        save_file(tensors, self.path("rt.safetensors"), metadata={"note": "x"})
        with open(self.path("rt.safetensors"), "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
        self.assertEqual(n % 8, 0)
        back = load_file(self.path("rt.safetensors"))
        self.assertEqual(list(back), list(tensors))
        for name, t in tensors.items():
            self.assertEqual(back[name].dtype, t.dtype, name)
            self.assertEqual(tuple(back[name].shape), tuple(t.shape), name)
            self.assertTrue(torch.equal(back[name], t), name)

    def test_rejects_offsets_that_do_not_match_shape(self):
        data = np.zeros(4, dtype="<f4").tobytes()
        _raw_file(self.path("bad.safetensors"), {"w": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}}, data)
        with self.assertRaisesRegex(SafetensorsError, "'w'"):
            SafetensorsFile(self.path("bad.safetensors"))

    def test_rejects_truncated_data(self):
        data = np.zeros(2, dtype="<f4").tobytes()
        _raw_file(self.path("short.safetensors"), {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, data)
        with self.assertRaisesRegex(SafetensorsError, "offsets"):
            SafetensorsFile(self.path("short.safetensors"))

    def test_rejects_non_safetensors(self):
        with open(self.path("junk.bin"), "wb") as f:
            f.write(b"\x80\x02not a safetensors file at all")
        with self.assertRaises(SafetensorsError):
            SafetensorsFile(self.path("junk.bin"))


if __name__ == "__main__":
    unittest.main()
