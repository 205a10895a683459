"""diagnose_binding.py: the failure cascade on real shapes images and deliberately wrong captions."""
import contextlib
import dataclasses
import io
import os
import tempfile
import unittest

import torch

import diagnose_binding as db
from hart.config import get_config
from hart.model import HartModel
from shapes.captions import COLORS, SHAPES
from shapes.dataset import held_out_example


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


class Report(unittest.TestCase):
    def test_main_prints_one_row_per_stage_with_shares_summing_to_one(self):
        model = HartModel.random(get_config("tiny"), 0)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.pt")
            torch.save(model.checkpoint(), path)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                db.main([path, "--captions", "10", "--batch", "5", "--threads", "1"])
        rows = [line for line in out.getvalue().splitlines()
                if line.startswith("| ") and not line.startswith("| first")]
        self.assertEqual([r.split(" | ")[0][2:] for r in rows], list(db.STAGES))
        columns = len(rows[0].split(" | ")) - 1
        for column in range(1, columns + 1):
            total = sum(float(r.strip(" |").split(" | ")[column]) for r in rows)
            self.assertAlmostEqual(total, 1.0, places=2)


if __name__ == "__main__":
    unittest.main()
