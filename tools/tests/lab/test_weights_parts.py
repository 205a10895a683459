"""tools/lab/gpu/weights_parts.py: a generator's weights cut into parts on a GPU machine and joined here
with a template's tokenizer give back the trained model exactly."""
import os
import tempfile
import unittest

import torch

from hart.config import get_config
from hart.model import HartModel
from lab.gpu.weights_parts import join, pack


class WeightsParts(unittest.TestCase):
    def test_pack_then_join_restores_the_generator_and_keeps_the_template_tokenizer(self):
        config = get_config("tiny")
        trained, template = HartModel.random(config, 1).checkpoint(), HartModel.random(config, 2).checkpoint()
        trained.update(step=123, elapsed_s=45.0)
        template.update(step=0, elapsed_s=0.0)
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trained, os.path.join(folder, "model.pt"))
            torch.save(template, os.path.join(folder, "template.pt"))
            parts = pack(os.path.join(folder, "model.pt"), folder, chunk=64 * 1024)
            self.assertGreater(len(parts), 1)                     # really cut into parts
            self.assertTrue(all(os.path.getsize(p) <= 64 * 1024 for p in parts))
            meta = join(folder, "model", os.path.join(folder, "template.pt"), os.path.join(folder, "joined.pt"))
            joined = torch.load(os.path.join(folder, "joined.pt"))
        self.assertEqual((meta["step"], joined["step"], joined["elapsed_s"]), (123, 123, 45.0))
        for part in ("transformer", "text_encoder"):
            for name, value in trained[part].items():
                self.assertTrue(torch.equal(joined[part][name], value), name)
        for name, value in template["tokenizer"].items():
            self.assertTrue(torch.equal(joined["tokenizer"][name], value), name)

    def test_a_missing_part_set_is_refused(self):
        with tempfile.TemporaryDirectory() as folder:
            with self.assertRaises(SystemExit):
                join(folder, "model", "unused.pt", os.path.join(folder, "out.pt"))


if __name__ == "__main__":
    unittest.main()
