"""diagnose_binding.py: the failure cascade on real shapes images and deliberately wrong captions."""
import contextlib
import dataclasses
import io
import os
import tempfile
import unittest

import torch

from hart.config import get_config
from hart.model import HartModel
from lab import diagnose_binding as db
from lab.shapes.captions import COLORS, SHAPES
from lab.shapes.dataset import held_out_example


def first_of_form(form: str, size: int = 128):
    """(image, scene) of the first held-out example of a caption form."""
    for i in range(200):
        image, _, scene = held_out_example(3, i, size)
        if scene.form == form:
            return image, scene
    raise AssertionError(f"no {form} example")


class Cascade(unittest.TestCase):
    def test_real_images_with_their_own_captions_are_right(self):
        for i in range(15):
            image, _, scene = held_out_example(3, i, 128)
            self.assertEqual(db.first_failure(image, scene), "right", scene)

    def test_a_relation_read_backwards_is_roles_swapped(self):
        image, scene = first_of_form("relation")
        swapped = dataclasses.replace(scene, objects=scene.objects[::-1])
        self.assertEqual(db.first_failure(image, swapped), "roles swapped")

    def test_a_count_too_high_is_fewer_objects(self):
        image, scene = first_of_form("count")
        more = dataclasses.replace(scene, objects=scene.objects + scene.objects[:1])
        self.assertEqual(db.first_failure(image, more), "fewer objects")
        fewer = dataclasses.replace(scene, objects=scene.objects[:1])
        self.assertEqual(db.first_failure(image, fewer), "more objects")

    def test_another_colour_is_colours(self):
        image, scene = first_of_form("plain")
        obj = scene.objects[0]
        other = next(c for c in COLORS if c not in (obj.color, scene.background))
        recoloured = dataclasses.replace(scene, objects=(dataclasses.replace(obj, color=other),))
        self.assertEqual(db.first_failure(image, recoloured), "colours")

    def test_another_shape_is_shapes(self):
        image, scene = first_of_form("plain")
        obj = scene.objects[0]
        other = next(s for s in SHAPES if s != obj.shape)
        reshaped = dataclasses.replace(scene, objects=(dataclasses.replace(obj, shape=other),))
        self.assertEqual(db.first_failure(image, reshaped), "shapes")


class Attention(unittest.TestCase):
    def test_held_out_examples_are_of_the_forms_asked_for(self):
        examples = db.held_out_of_forms(4, 7, 64)
        self.assertEqual(len(examples), 4)
        for _, caption, scene in examples:
            self.assertEqual(scene.form, "relation")
            self.assertNotEqual(scene.objects[0].color, scene.objects[1].color)
        self.assertEqual({e[2].form for e in db.held_out_of_forms(3, 7, 64, ("count",))}, {"count"})

    def test_table_has_a_row_per_block_and_shares_within_the_softmax(self):
        model = HartModel.random(get_config("tiny"), 0)
        c = model.config
        table = db.attention_table(model, db.held_out_of_forms(3, 7, c.image_size))
        self.assertEqual(len(table), c.depth)
        for rows in table:
            self.assertEqual([r["scale"] for r in rows], list(c.patch_nums[1:]))
            for r in rows:
                self.assertGreaterEqual(r["colours"], 0.0)
                self.assertGreaterEqual(r["padding"], 0.0)
                self.assertLessEqual(r["colours"] + r["padding"], 1.0 + 1e-5)
                # One colour word's weight is part of all three colour words' share.
                if r["own"] == r["own"]:
                    self.assertLessEqual(r["own"], 1.0)
        # The finest grid separates the two objects in every image.
        self.assertFalse(any(r["own"] != r["own"] for r in (rows[-1] for rows in table)))


class Negatives(unittest.TestCase):
    def test_a_model_that_reads_the_caption_tells_negatives_apart_and_a_blind_one_does_not(self):
        model = HartModel.random(get_config("tiny"), 0)
        examples = (db.held_out_of_forms(3, 7, model.config.image_size)
                    + db.held_out_of_forms(2, 7, model.config.image_size, ("count",)))
        table = db.negative_gaps(model, examples)
        self.assertEqual(list(table)[:2], ["flipped relation", "swapped colours"])
        self.assertEqual(table["flipped relation"]["n"], 3)
        self.assertEqual(table["changed count"]["n"], 2)
        # Only relations whose two shapes differ have a shape swap.
        self.assertEqual(table.get("swapped shapes", {"n": 0})["n"],
                         sum(e[2].objects[0].shape != e[2].objects[1].shape for e in examples[:3]))
        for row in table.values():
            self.assertTrue(all(0.0 <= row[r + " share"] <= 1.0 for r in ("coarse", "fine", "all")))
        # Random weights read the words, so a different caption changes the cross-entropy.
        self.assertTrue(any(row["all"] != 0.0 for row in table.values()))
        self.assertEqual(table["object left out"]["n"], 5)
        # With the text encoder's output zeroed the words cannot matter: every gap of a negative
        # with as many words is 0 up to the float rounding of scoring in batches of other sizes.
        # ("Object left out" is shorter: fewer text positions to attend to, and the image tokens
        # after the text sit elsewhere, so its gap need not be 0.)
        encoder = model.text_encoder
        model.text_encoder = lambda ids, mask: torch.zeros_like(encoder(ids, mask))
        blind = db.negative_gaps(model, examples)
        self.assertIn("object left out", blind)
        for kind, row in blind.items():
            if kind == "object left out":
                continue
            for r in ("coarse", "fine", "all"):
                self.assertAlmostEqual(row[r], 0.0, delta=db.ROUNDING_NATS)
                self.assertEqual(row[r + " share"], 0.0)


class Report(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = HartModel.random(get_config("tiny"), 0)

    def printed(self, *args) -> str:
        """What main prints for the tiny model with these arguments."""
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.pt")
            torch.save(self.model.checkpoint(), path)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                db.main([path, *args, "--threads", "1"])
        return out.getvalue()

    def test_main_prints_one_row_per_stage_with_shares_summing_to_one(self):
        rows = [line for line in self.printed("--captions", "10", "--batch", "5").splitlines()
                if line.startswith("| ") and not line.startswith("| first")]
        self.assertEqual([r.split(" | ")[0][2:] for r in rows], list(db.STAGES))
        columns = len(rows[0].split(" | ")) - 1
        for column in range(1, columns + 1):
            total = sum(float(r.strip(" |").split(" | ")[column]) for r in rows)
            self.assertAlmostEqual(total, 1.0, places=2)

    def test_main_prints_the_negatives_table(self):
        lines = self.printed("--captions", "0", "--negatives", "2").splitlines()
        kinds = [line.split(" | ")[0][2:] for line in lines if line.startswith("| ") and line.count("|") == 6]
        self.assertEqual(kinds[0], "negative")   # the header, then one row per kind that applies
        self.assertEqual([k for k in kinds[1:] if k != "swapped shapes"],
                         ["flipped relation", "swapped colours", "changed count", "object left out"])

    def test_main_prints_the_attention_table_alone_with_no_captions(self):
        text = self.printed("--captions", "0", "--attention", "2")
        self.assertNotIn("first failure", text)
        blocks = [line for line in text.splitlines() if line[:4] in {f"| {b} " for b in range(10)}]
        self.assertEqual(len(blocks), self.model.config.depth)


if __name__ == "__main__":
    unittest.main()
