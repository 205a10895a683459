"""diagnose_scales.py on the tiny config: slices, the token table and the printed tables."""
import contextlib
import io
import os
import tempfile
import unittest

import numpy as np
import torch

from hart.config import get_config
from hart.model import HartModel
from lab import diagnose_scales as ds
from lab.data import encode_images
from lab.shapes.dataset import held_out_example


class DiagnoseScales(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = HartModel.random(get_config("tiny"), 0)

    def test_scale_slices_tile_the_token_sequence(self):
        pns = self.model.config.patch_nums
        slices = ds.scale_slices(pns)
        self.assertEqual(slices[0].start, 0)
        for a, b, pn in zip(slices, slices[1:] + [None], pns):
            self.assertEqual(a.stop - a.start, pn * pn)
            if b is not None:
                self.assertEqual(a.stop, b.start)

    def test_token_table_counts_every_token_once(self):
        c = self.model.config
        examples = [held_out_example(5, i, c.image_size) for i in range(3)]
        images = np.stack([e[0] for e in examples])
        tokens = encode_images(self.model.tokenizer, images)[0].numpy()
        rows = ds.token_table(self.model, images, [e[1] for e in examples], tokens, batch=2)
        self.assertEqual(len(rows), len(c.patch_nums))
        for pn, row in zip(c.patch_nums, rows):
            self.assertEqual(row["object"]["tokens"] + row["background"]["tokens"], 3 * pn * pn)
            for part in row.values():
                self.assertGreaterEqual(part["ce"], 0.0)
                self.assertTrue(0.0 <= part["accuracy"] <= 1.0)
        # The finest grid resolves the objects: some cells are object, most are background.
        self.assertGreater(rows[-1]["object"]["tokens"], 0)
        self.assertGreater(rows[-1]["background"]["tokens"], rows[-1]["object"]["tokens"])

    def test_main_prints_the_ladder_and_the_token_table(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.pt")
            torch.save(self.model.checkpoint(), path)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                ds.main([path, "--images", "5", "--every", "3", "--batch", "4", "--threads", "1"])
        text = out.getvalue()
        K = self.model.config.num_scales
        ladder = [line for line in text.splitlines() if line.startswith("| none") or line.startswith("| 1–")]
        self.assertEqual(len(ladder), len(sorted(set(range(0, K, 3)) | {K - 1, K})))
        self.assertIn(f"| 1–{K} (up to", text)
        pns = self.model.config.patch_nums
        self.assertEqual(sum(line.startswith(f"| {pn}×{pn} |") for pn in pns for line in text.splitlines()),
                         len(pns))


if __name__ == "__main__":
    unittest.main()
