"""Tests of the shapes world: caption grammar, renderer, data set, and the checker."""

import contextlib
import io
import json
import os
import tempfile
import unittest

import numpy as np

from hart.text_vocab import SHAPES_WORDS, UNK_ID, tokenize
from lab.shapes.captions import (COLORS, FORMS, VOCABULARY, Scene, ShapeObject, parse_caption,
                                 to_caption)
from lab.shapes.checker import (FALSIFY_KINDS, check, check_scene, classify_shape, falsify,
                                find_objects, label, segment, validate_checker)
from lab.shapes.dataset import (build_cache, form_of, held_out_captions, held_out_example,
                                load_cache, random_scene, render_example, render_if_missing, TRAIN)
from lab.shapes.grid import examples_by_form, grid, read_png, save_grid
from lab.shapes.render import Placement, background, draw, render_scene

from lab import diagnosis, evaluate

class CaptionGrammarTest(unittest.TestCase):
    def test_issue_examples_both_ways(self):
        examples = {
            'a red circle on a blue background':
                Scene('blue', (ShapeObject('red', 'circle'),)),
            'a small yellow square on a black background':
                Scene('black', (ShapeObject('yellow', 'square', size='small'),)),
            'a green triangle in the top left on a white background':
                Scene('white', (ShapeObject('green', 'triangle', position='top left'),)),
            'a red circle left of a blue square on a white background':
                Scene('white', (ShapeObject('red', 'circle'), ShapeObject('blue', 'square')),
                      'left of'),
            'two purple circles on an orange background':
                Scene('orange', (ShapeObject('purple', 'circle'),) * 2),
        }
        forms = []
        for text, scene in examples.items():
            self.assertEqual(to_caption(scene), text)
            self.assertEqual(parse_caption(text), scene)
            forms.append(scene.form)
        self.assertEqual(forms, list(FORMS))

    def test_articles(self):
        self.assertEqual(to_caption(Scene('blue', (ShapeObject('orange', 'circle'),))),
                         'an orange circle on a blue background')
        self.assertEqual(to_caption(Scene('orange', (ShapeObject('red', 'square', 'large'),))),
                         'a large red square on an orange background')
        self.assertEqual(parse_caption('three large blue triangles on an orange background')
                         .objects, (ShapeObject('blue', 'triangle', 'large'),) * 3)
        for bad in ('a orange circle on a blue background',
                    'an red circle on a blue background',
                    'a red circle on a orange background'):
            with self.assertRaises(ValueError):
                parse_caption(bad)

    def test_rejects_text_outside_the_world(self):
        for bad in ('a red circle', 'a red circle on a red background',
                    'a pink circle on a blue background', 'two red circle on a blue background',
                    'a red circle in the middle on a blue background',
                    'a red circle left of a red square on a blue background',
                    'a red circle on a blue background please', ''):
            with self.assertRaises(ValueError, msg=bad):
                parse_caption(bad)

    def test_vocabulary_is_the_text_tokenizers(self):
        self.assertEqual(sorted(VOCABULARY), sorted(SHAPES_WORDS))

    def test_random_scenes_round_trip_within_the_vocabulary(self):
        vocab = set(VOCABULARY)
        rng = np.random.default_rng(3)
        for i in range(300):
            scene = random_scene(FORMS[i % len(FORMS)], rng)
            text = to_caption(scene)
            self.assertTrue(set(text.split()) <= vocab, text)
            self.assertNotIn(UNK_ID, tokenize(text))
            self.assertEqual(parse_caption(text), scene)
            self.assertEqual(parse_caption(text.upper()), scene)
            self.assertEqual(scene.form, FORMS[i % len(FORMS)])
            self.assertNotIn(scene.background, [o.color for o in scene.objects])
            self.assertEqual(Scene.from_dict(json.loads(json.dumps(scene.to_dict()))), scene)


class RendererTest(unittest.TestCase):
    def test_deterministic_and_varied(self):
        a, ca, sa = render_example(7, 3)
        b, cb, sb = render_example(7, 3)
        self.assertEqual(a.dtype, np.uint8)
        self.assertEqual(a.shape, (128, 128, 3))
        np.testing.assert_array_equal(a, b)
        self.assertEqual((ca, sa), (cb, sb))
        others = [render_example(7, 4)[0], render_example(8, 3)[0]]
        for o in others:
            self.assertFalse(np.array_equal(a, o))

    def test_shapes_geometry_and_antialiasing(self):
        width = 96
        bg = np.full((width, width, 3), 0.0, np.float32) + np.array([25, 25, 25], np.float32)
        for shape, fill in (('circle', np.pi / 4), ('square', 1.0), ('triangle', 0.5)):
            p = Placement('white', shape, 48.3, 47.6, 40.0)
            img = draw([p], bg)
            alpha = (img[..., 0].astype(np.float32) - 25) / (245 - 25)
            self.assertAlmostEqual(alpha.sum() / 40.0 ** 2, fill, delta=0.01)
            # Anti-aliased: some edge pixels are partly covered.
            self.assertGreater(((alpha > 0.1) & (alpha < 0.9)).sum(), 20)
            ys, xs = np.nonzero(alpha > 0.5)
            cy = (alpha * np.arange(width)[:, None]).sum() / alpha.sum() + 0.5
            self.assertAlmostEqual(cy, p.centroid[1], delta=0.2)
            self.assertAlmostEqual(xs.max() - xs.min() + 1, 40, delta=1)
        tri = draw([Placement('white', 'triangle', 48, 48, 40)], bg)[..., 0] > 135
        rows = tri.sum(1)
        self.assertLess(rows[30], rows[60])   # widens downwards: points up

    def test_background_texture_is_faint_but_present(self):
        for i, color in enumerate(COLORS):
            bg = background(color, np.random.default_rng(i), 128)
            self.assertGreater(bg.std(axis=(0, 1)).max(), 1.0)   # not flat
            img = np.clip(np.rint(bg), 0, 255).astype(np.uint8)
            self.assertTrue((segment(img) == COLORS.index(color)).all(), color)

    def test_sizes_follow_the_caption(self):
        widths = {'small': [], 'large': [], None: []}
        for i in range(60):
            image, caption, scene = render_example(11, i)
            _, found = find_objects(image)
            for comp in found:
                widths[scene.objects[0].size].append(comp.width / 128)
        self.assertTrue(widths['small'] and widths['large'] and widths[None])
        self.assertTrue(0.14 <= min(widths['small']) and max(widths['small']) <= 0.26)
        self.assertTrue(0.34 <= min(widths['large']) and max(widths['large']) <= 0.51)
        self.assertTrue(0.18 <= min(widths[None]) and max(widths[None]) <= 0.35)

    def test_other_image_sizes(self):
        for size in (96, 256):
            for i in range(10):
                image, caption, _ = render_example(2, i, size=size)
                self.assertEqual(image.shape, (size, size, 3))
                self.assertTrue(check(image, caption)['ok'], (size, caption))


class DatasetTest(unittest.TestCase):
    def test_forms_are_balanced(self):
        forms = [form_of(TRAIN, 0, i) for i in range(100)]
        self.assertEqual({f: forms.count(f) for f in FORMS}, {f: 20 for f in FORMS})
        self.assertNotEqual(forms[:5], forms[5:10])   # shuffled within blocks

    def test_held_out_captions(self):
        caps = held_out_captions(200, seed=0)
        self.assertEqual(len(caps), 200)
        self.assertEqual(len(set(caps)), 200)
        self.assertEqual(caps, held_out_captions(200, seed=0))
        self.assertNotEqual(caps, held_out_captions(200, seed=1))
        forms = [parse_caption(c).form for c in caps]
        self.assertEqual({f: forms.count(f) for f in FORMS}, {f: 40 for f in FORMS})
        image, caption, _ = held_out_example(0, 0)
        self.assertFalse(np.array_equal(image, render_example(0, 0)[0]))
        self.assertTrue(check(image, caption)['ok'])

    def test_cache_matches_render_example(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, 'cache')
            build_cache(out, 6, seed=4, size=64, start=10, log_every=0)
            images, meta = load_cache(out)
            self.assertEqual(images.shape, (6, 64, 64, 3))
            with open(os.path.join(out, '.gitignore')) as f:
                self.assertEqual(f.read().strip(), '*')
            for k in range(6):
                image, caption, scene = render_example(4, 10 + k, size=64)
                np.testing.assert_array_equal(images[k], image)
                self.assertEqual(meta['captions'][k], caption)
                self.assertEqual(Scene.from_dict(meta['specs'][k]), scene)
                self.assertEqual(meta['forms'][k], scene.form)

    def test_workers_render_the_same_cache(self):
        # A GPU machine renders its large cache in parallel; the files must not change.
        with tempfile.TemporaryDirectory() as d:
            build_cache(os.path.join(d, 'one'), 7, seed=2, size=32, start=3, log_every=0)
            build_cache(os.path.join(d, 'three'), 7, seed=2, size=32, start=3, log_every=0, workers=3)
            (one, meta_one), (three, meta_three) = load_cache(os.path.join(d, 'one')), load_cache(os.path.join(d, 'three'))
            np.testing.assert_array_equal(one, three)
            self.assertEqual(meta_one, meta_three)
            self.assertGreater(len(np.unique(three.reshape(7, -1), axis=0)), 1)   # rows really filled

    def test_a_missing_cache_is_rendered_once(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, 'runs', 'cache')
            said = []
            render_if_missing(out, n=3, size=32, log=said.append)
            images, meta = load_cache(out)
            self.assertEqual(images.shape, (3, 32, 32, 3))
            np.testing.assert_array_equal(images[2], render_example(0, 2, size=32)[0])
            self.assertEqual(len(said), 2)
            render_if_missing(out, n=5, size=32, log=said.append)   # there: left as it is
            self.assertEqual(load_cache(out)[0].shape[0], 3)
            self.assertEqual(len(said), 2)


class CheckerTest(unittest.TestCase):
    N = 100   # the full validation (500 examples) is in the report; this keeps the test quick

    def test_label_counts_components(self):
        m = np.zeros((20, 30), bool)
        m[2:6, 2:9] = True
        m[10:18, 20:28] = True
        m[10:12, 5:6] = True
        m[3, 9:25] = True          # joins the first block to nothing else: still one piece
        labels, n = label(m)
        self.assertEqual(n, 3)
        self.assertEqual(len(np.unique(labels[m])), 3)
        self.assertEqual(labels[4, 4], labels[3, 24])
        self.assertTrue((labels[~m] == 0).all())
        # A spiral-like snake must come out as a single component.
        snake = np.zeros((9, 9), bool)
        snake[0, :] = snake[:, 8] = snake[8, :] = snake[2:, 0] = snake[2, :7] = True
        self.assertEqual(label(snake)[1], 1)

    def test_classify_shape(self):
        y, x = np.mgrid[0:40, 0:40] + 0.5
        circle = (x - 20) ** 2 + (y - 20) ** 2 <= 400
        square = np.ones((40, 40), bool)
        up = np.abs(x - 20) <= y / 2
        self.assertEqual(classify_shape(circle)[0], 'circle')
        self.assertEqual(classify_shape(square)[0], 'square')
        self.assertEqual(classify_shape(up)[0], 'triangle')
        self.assertNotEqual(classify_shape(up[::-1])[0], 'triangle')      # points down
        self.assertNotEqual(classify_shape(x <= y)[0], 'triangle')         # right-angled
        self.assertEqual(classify_shape(np.ones((10, 40), bool))[0], 'unknown')  # a bar

    def test_accepts_true_and_rejects_false_captions(self):
        r = validate_checker(self.N, seed=99)
        self.assertGreaterEqual(r['accept'], 0.98)
        self.assertEqual(sorted(r['accept_by_form']), sorted(FORMS))
        self.assertEqual(sorted(r['reject']), sorted(FALSIFY_KINDS))
        for kind, share in r['reject'].items():
            self.assertGreaterEqual(r['reject_n'][kind], 10, kind)
            self.assertGreaterEqual(share, 0.95, kind)

    def test_falsify_changes_exactly_one_statement(self):
        rng = np.random.default_rng(1)
        for i in range(50):
            scene = random_scene(FORMS[i % len(FORMS)], rng)
            for kind in FALSIFY_KINDS:
                wrong = falsify(scene, kind, rng)
                if wrong is None:
                    continue
                self.assertNotEqual(wrong, scene)
                self.assertEqual(parse_caption(to_caption(wrong)), wrong)   # still a valid caption
                self.assertEqual(wrong.form, scene.form)

    def test_tolerates_blur_and_noise(self):
        # Generated images are softer and noisier than rendered ones: a 3x3 blur plus
        # Gaussian noise (sigma 8) must not change the verdict on true captions.
        rng = np.random.default_rng(2)
        ok = []
        for i in range(40):
            image, caption, _ = render_example(96, i)
            pad = np.pad(image.astype(np.float32), ((1, 1), (1, 1), (0, 0)), mode='edge')
            soft = sum(pad[dy:dy + 128, dx:dx + 128] for dy in range(3) for dx in range(3)) / 9
            noisy = np.clip(soft + rng.normal(0, 8, soft.shape), 0, 255).astype(np.uint8)
            self.assertFalse(np.array_equal(noisy, image))
            ok.append(check(noisy, caption)['ok'])
        self.assertGreaterEqual(np.mean(ok), 0.95)

    def test_flags_name_the_failed_part(self):
        image, _, scene = render_example(97, 0)
        noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
        flat = np.zeros((128, 128, 3), np.uint8) + np.array([40, 90, 220], np.uint8)
        r = check(flat, 'a red circle on a blue background')
        self.assertTrue(r['background'])
        self.assertFalse(r['ok'] or r['colors'] or r['counts'] or r['shapes'])
        self.assertFalse(check(noise, 'a red circle on a blue background')['ok'])
        r = check_scene(image, scene)
        self.assertTrue(r['ok'])
        self.assertEqual(set(r), {'ok', 'form', 'background', 'colors', 'shapes', 'counts',
                                  'positions', 'relations', 'sizes'})


if __name__ == '__main__':
    unittest.main()


class GridTest(unittest.TestCase):
    def test_png_round_trip_and_layout(self):
        images, captions = examples_by_form(seed=3, per_form=2, size=32)
        self.assertEqual(len(images), 10)
        self.assertEqual([parse_caption(c).form for c in captions],
                         [f for f in FORMS for _ in range(2)])
        g = grid(images, cols=2, pad=4)
        self.assertEqual(g.shape, (5 * 36 + 4, 2 * 36 + 4, 3))
        np.testing.assert_array_equal(g[4 + 36:4 + 36 + 32, 4 + 36:4 + 36 + 32], images[3])
        self.assertTrue((g[:4] == 255).all())
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, 'g.png')
            save_grid(path, images, captions, cols=2)
            np.testing.assert_array_equal(read_png(path), g)
            with open(path + '.md') as f:
                table = f.read()
            self.assertEqual(table.count('\n'), 2 + 5)
            self.assertIn(captions[9], table.splitlines()[-1])


class EvaluateTest(unittest.TestCase):
    def test_psnr(self):
        a = np.zeros((8, 8, 3), np.uint8)
        self.assertEqual(evaluate.psnr(a, a), float('inf'))
        self.assertAlmostEqual(evaluate.psnr(a, a + 1), 10 * np.log10(255.0 ** 2), places=6)
        self.assertAlmostEqual(evaluate.psnr(a, a + 16), 10 * np.log10(255.0 ** 2 / 256), places=6)

    def test_score_by_form_with_a_perfect_and_a_wrong_painter(self):
        captions = held_out_captions(20, seed=4)

        def painter(lie: bool):
            def paint(prompts, b):
                out = []
                for i, c in enumerate(prompts):
                    scene = parse_caption(c)
                    rng = np.random.default_rng([b, i])
                    if lie:
                        scene = falsify(scene, 'shape', rng)
                    out.append(render_scene(scene, rng, 128)[0])
                return np.stack(out)
            return paint

        good = diagnosis.score_captions(painter(False), captions, batch=6, keep=1)
        self.assertEqual(good['n'], 20)
        self.assertEqual(good['overall'], 1.0)
        self.assertEqual(good['by_form'], {f: 1.0 for f in FORMS})
        self.assertEqual(good['count_by_form'], {f: 4 for f in FORMS})
        self.assertEqual(good['part_counts']['relations'], 4)
        self.assertEqual(good['part_counts']['shapes'], 20)
        self.assertEqual([len(v) for v in good['kept'].values()], [1] * 5)
        bad = diagnosis.score_captions(painter(True), captions, batch=6)
        self.assertEqual(bad['overall'], 0.0)
        self.assertEqual(bad['parts']['shapes'], 0.0)
        self.assertEqual(bad['parts']['background'], 1.0)
        table = evaluate.format_generation({'true': good, 'lying': bad})
        self.assertIn('| plain (4) | 1.000 | 0.000 |', table)

    def test_use_decoder_swaps_only_a_further_trained_decoder(self):
        import torch
        from hart.config import get_config
        from hart.model import HartModel
        model = HartModel.random(get_config('tiny'), 0)
        further = HartModel.random(get_config('tiny'), 0).tokenizer
        with torch.no_grad():
            for p in further.decoder.parameters():
                p.add_(0.01)
        diagnosis.use_decoder(model, further)
        for k, v in further.state_dict().items():
            self.assertTrue(torch.equal(model.tokenizer.state_dict()[k], v), k)
        other = HartModel.random(get_config('tiny'), 1).tokenizer   # another codebook
        with self.assertRaisesRegex(ValueError, 'encoder and codebook'):
            diagnosis.use_decoder(model, other)

    def test_runs_end_to_end_on_a_random_tiny_model(self):
        import torch
        from hart.config import get_config
        from hart.model import HartModel
        model = HartModel.random(get_config('tiny'), 0)
        with tempfile.TemporaryDirectory() as d:
            ck = model.checkpoint()
            ck.update(step=100, elapsed_s=7200.0)
            torch.save(ck, os.path.join(d, 'm.pt'))
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                r = evaluate.main(['--checkpoint', os.path.join(d, 'm.pt'), '--images', '4',
                                   '--captions', '5', '--batch', '5', '--curve',
                                   os.path.join(d, 'm.pt'), '--curve-captions', '5',
                                   '--grid', os.path.join(d, 'g.png'),
                                   '--json', os.path.join(d, 'r.json'),
                                   '--decoder', os.path.join(d, 'm.pt')])
            self.assertIn('| discrete tokens only |', printed.getvalue())
            self.assertIn('| **overall** |', printed.getvalue())
            with open(os.path.join(d, 'r.json')) as f:
                self.assertEqual(json.load(f)['curve'][0]['step'], 100)
            self.assertEqual(read_png(os.path.join(d, 'g.png')).shape[2], 3)
        self.assertEqual(r['tokenizer']['n'], 4)
        self.assertEqual(r['tokenizer']['check']['original'], 1.0)
        self.assertTrue(all(np.isfinite(v) for v in r['tokenizer']['psnr'].values()))
        self.assertEqual(set(r['generation']), {'with residual head', 'discrete only'})
        self.assertEqual(r['generation']['discrete only']['n'], 5)
        self.assertEqual(r['curve'][0]['elapsed_s'], 7200.0)
        self.assertEqual(r['decoder'], os.path.join(d, 'm.pt'))
