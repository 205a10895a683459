"""Binding negatives: captions that use the same words but do not describe the image, and the
margin that asks the generator to tell them apart."""
import unittest

import numpy as np
import torch

from hart.config import get_config
from hart.model import HartModel
from lab import train_generator as tg
from lab.generator import batches, forward, loss as training_loss
from lab.generator.binding_negatives import KINDS, margin_loss, negative_caption
from lab.shapes.captions import parse_caption

RELATION = "a small red circle left of a blue square on a white background"


class NegativeCaptions(unittest.TestCase):
    def test_each_kind_changes_only_what_it_names(self):
        scene = parse_caption(RELATION)
        flipped = parse_caption(negative_caption(RELATION, "flip"))
        self.assertEqual(flipped.relation, "right of")
        self.assertEqual(flipped.objects, scene.objects)
        swapped = parse_caption(negative_caption(RELATION, "colours"))
        self.assertEqual(swapped.relation, scene.relation)
        self.assertEqual([(o.color, o.shape, o.size) for o in swapped.objects],
                         [("blue", "circle", "small"), ("red", "square", None)])
        self.assertEqual(swapped.background, scene.background)
        shapes = parse_caption(negative_caption(RELATION, "shapes"))
        self.assertEqual(shapes.relation, scene.relation)
        self.assertEqual([(o.color, o.shape, o.size) for o in shapes.objects],
                         [("red", "square", "small"), ("blue", "circle", None)])
        for relation, opposite in (("above", "below"), ("below", "above"), ("right of", "left of")):
            caption = RELATION.replace("left of", relation)
            self.assertEqual(parse_caption(negative_caption(caption, "flip")).relation, opposite)
        for words, other in (("two", 3), ("three", 2)):
            counted = parse_caption(negative_caption(f"{words} small green squares on a white background", "count"))
            self.assertEqual(counted.count, other)
            self.assertEqual(set(counted.objects), {parse_caption("a small green square on a white background").objects[0]})
            self.assertEqual(counted.background, "white")
        alone = parse_caption(negative_caption(RELATION, "extra"))
        self.assertEqual((alone.objects, alone.relation, alone.background), (scene.objects[:1], None, "white"))
        self.assertEqual(negative_caption("three small green squares on a white background", "extra"),
                         "a small green square on a white background")

    def test_a_kind_that_does_not_apply_gives_none(self):
        for caption in ("a red circle on a blue background", "a green triangle in the top left on a white background",
                        "a small yellow square on a black background"):
            for kind in KINDS:
                self.assertIsNone(negative_caption(caption, kind))
        for kind in ("flip", "colours", "shapes"):
            self.assertIsNone(negative_caption("two green squares on a white background", kind))
        self.assertIsNone(negative_caption(RELATION, "count"))
        # Equal shapes: swapping them would give the caption itself.
        self.assertIsNone(negative_caption("a red circle above a blue circle on a white background", "shapes"))
        with self.assertRaises(ValueError):
            negative_caption(RELATION, "size")

    def test_rows_get_a_negative_of_a_chosen_kind_only_where_one_applies(self):
        batch = {"captions": ["a red circle on a blue background", RELATION,
                              "two green squares on a white background", RELATION]}
        dropped = torch.tensor([False, False, False, True])
        rows, negatives = training_loss.negative_rows(batch, dropped, torch.Generator().manual_seed(0), ("flip",))
        self.assertEqual((rows, negatives), ([1], [negative_caption(RELATION, "flip")]))
        rows, negatives = training_loss.negative_rows(batch, None, torch.Generator().manual_seed(0), ("count",))
        self.assertEqual((rows, negatives), ([2], ["three green squares on a white background"]))
        seen = set()
        for seed in range(40):
            seen.update(training_loss.negative_rows(batch, dropped, torch.Generator().manual_seed(seed), KINDS)[1])
        self.assertEqual(seen, {negative_caption(RELATION, k) for k in ("flip", "colours", "shapes", "extra")}
                         | {"three green squares on a white background", "a green square on a white background"})

    def test_the_kinds_flag(self):
        self.assertEqual(tg.parse_args([]).binding_kinds, ("flip", "colours"))
        self.assertEqual(tg.parse_args(["--binding-kinds", "shapes,count"]).binding_kinds, ("shapes", "count"))
        import contextlib, io
        for bad in ("", "flip,size"):
            with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                tg.parse_args(["--binding-kinds", bad])


class Margin(unittest.TestCase):
    def test_the_hinge_is_zero_past_the_margin_and_pushes_the_negative_up_before(self):
        ce_true = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
        ce_negative = torch.tensor([[2.0, 2.0, 2.0], [1.1, 1.1, 1.1]], requires_grad=True)
        weights = torch.tensor([[0.5, 0.5, 0.0]])            # [1, T] broadcasts over the images
        loss, gap = margin_loss(ce_true, ce_negative, weights, 0.5)
        self.assertAlmostEqual(float(gap), (1.0 + 0.1) / 2, places=5)
        self.assertAlmostEqual(float(loss), (0.0 + 0.4) / 2, places=5)   # only the second image
        loss.backward()
        grad = ce_negative.grad
        self.assertTrue(torch.all(grad[0] == 0))
        self.assertTrue(torch.all(grad[1, :2] < 0))        # descent raises the negative's CE
        self.assertEqual(float(grad[1, 2]), 0.0)            # a token of weight 0 does not count

    def test_losses_add_the_weighted_margin_of_the_relation_rows_only(self):
        c = get_config("tiny")
        model = HartModel.random(c, 0)
        rng = np.random.default_rng(0)
        tokens = sum(pn * pn for pn in c.patch_nums)
        captions = ["a red circle on a blue background", RELATION, "two green squares on a white background",
                    "a purple triangle above a yellow circle on a black background"]
        encoded = {"indices": rng.integers(0, c.vocab_size, (4, tokens)).astype(np.int16),
                   "residual": rng.standard_normal((4, c.latent_side ** 2, c.latent_channels)).astype(np.float16),
                   "captions": captions}
        batch = batches.EncodedData(c, encoded).batch(np.arange(4))

        def run(*extra):
            args = tg.parse_args(["--fp32", "--last-keep", "0", "--diff-weight", "0"] + list(extra))
            with torch.no_grad():
                return training_loss.losses(model, batch, args, forward.RopeCache(model.transformer),
                                 torch.Generator().manual_seed(0), train=False)

        plain = run()
        self.assertNotIn("gap", plain)
        on = run("--binding-weight", "2", "--binding-margin", "100")
        # A margin no gap reaches: the hinge is margin − gap, so loss = plain + 2·(100 − gap).
        self.assertAlmostEqual(float(on["loss"]), float(plain["loss"]) + 2 * (100 - float(on["gap"])), places=3)
        self.assertAlmostEqual(float(on["ce"]), float(plain["ce"]), places=6)
        self.assertGreater(abs(float(on["gap"])), 0.0)
        # Margin 0: only images with a negative gap cost anything (the hinge is per image, so at
        # least the hinge of the mean gap); the gap itself does not depend on the margin.
        off = run("--binding-weight", "2", "--binding-margin", "0")
        self.assertAlmostEqual(float(off["gap"]), float(on["gap"]), places=6)
        extra = float(off["loss"]) - float(plain["loss"])
        self.assertGreaterEqual(extra, 2 * max(0.0, -float(off["gap"])) - 1e-4)
        self.assertLess(extra, float(on["loss"]) - float(plain["loss"]))

    def test_the_coarse_forward_equals_the_first_scales_of_the_whole_one(self):
        c = get_config("tiny")
        model = HartModel.random(c, 0)
        tokens = torch.randint(0, c.vocab_size, (2, sum(pn * pn for pn in c.patch_nums)))
        inputs = forward.teacher_inputs(model.tokenizer.quantize, tokens)
        context = torch.randn(2, c.context_tokens, c.context_dim)
        with torch.no_grad():
            whole, _ = forward.training_forward(model.transformer, context, [5, 3], inputs, forward.RopeCache(model.transformer))
            first, _ = forward.training_forward(model.transformer, context, [5, 3], inputs, forward.RopeCache(model.transformer),
                                           scales=3)
        count = forward.coarse_token_count(c, 3)
        self.assertEqual(first.shape[1], count)
        self.assertLess((first - whole[:, :count]).abs().max().item(), 1e-4)

    def test_a_negative_margin_or_weight_is_refused(self):
        import contextlib, io
        for bad in (["--binding-weight", "-1"], ["--binding-margin", "-0.1"], ["--binding-scales", "0"]):
            with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                tg.parse_args(bad)


if __name__ == "__main__":
    unittest.main()
