"""Which tokens cover an object (lab/data.py's object marks), and the cached marks."""
import os
import tempfile
import unittest

import numpy as np
import torch

from lab.data import load_or_mark_objects, object_cells, object_mask, object_tokens
from lab.shapes.checker import COLOR_NAMES, PALETTE_RGB
from lab.shapes.dataset import build_cache


def picture(size=32, box=(8, 16, 16, 24)):
    """A blue image with a red square over rows box[0]:box[1], columns box[2]:box[3]."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = PALETTE_RGB[COLOR_NAMES.index("blue")]
    image[box[0]:box[1], box[2]:box[3]] = PALETTE_RGB[COLOR_NAMES.index("red")]
    return image


class ObjectMarks(unittest.TestCase):
    def test_object_cells_are_the_cells_the_object_covers(self):
        cells = object_cells(object_mask(picture()), 4).reshape(4, 4)
        expected = np.zeros((4, 4), bool)
        expected[1, 2] = True
        np.testing.assert_array_equal(cells, expected)

    def test_background_texture_is_not_an_object(self):
        image = picture().astype(np.int16)
        image[::2] += 12   # faint stripes: still nearest to the background's palette colour
        self.assertEqual(object_mask(np.clip(image, 0, 255).astype(np.uint8)).sum(), 64)

    def test_object_tokens_are_laid_out_like_the_token_maps(self):
        # The square fills the top-left quarter: every scale marks its top-left cells only.
        marks = object_tokens(np.stack([picture(box=(0, 16, 0, 16))]), [1, 2, 4])
        self.assertEqual(marks.shape, (1, 1 + 4 + 16))
        np.testing.assert_array_equal(marks[0, :1], [True])
        np.testing.assert_array_equal(marks[0, 1:5], [True, False, False, False])
        quarter = np.zeros((4, 4), bool)
        quarter[:2, :2] = True
        np.testing.assert_array_equal(marks[0, 5:].reshape(4, 4), quarter)

    def test_marks_are_cached_and_remade_for_other_scales(self):
        with tempfile.TemporaryDirectory() as folder:
            data, path = os.path.join(folder, "data"), os.path.join(folder, "objects.npy")
            build_cache(data, 6, seed=0, size=32, log_every=0)
            logged = []
            threads = torch.get_num_threads()
            torch.set_num_threads(2)
            try:
                first = load_or_mark_objects(data, path, [1, 2, 4], 6, log=logged.append)
                self.assertEqual(torch.get_num_threads(), 2)   # marking in-process leaves training's threads
            finally:
                torch.set_num_threads(threads)
            self.assertEqual((first.shape, len(logged)), ((6, 21), 1))
            self.assertTrue(first.any(1).all())   # every image has an object
            again = load_or_mark_objects(data, path, [1, 2, 4], 6, log=logged.append)
            np.testing.assert_array_equal(first, again)
            self.assertEqual(len(logged), 1)      # read from the cache, not marked again
            other = load_or_mark_objects(data, path, [1, 2], 6, log=logged.append)
            self.assertEqual(other.shape, (6, 5))
            np.testing.assert_array_equal(other, first[:, :5])
            # Marked in worker processes (a GPU machine's cores): the same marks.
            parallel = load_or_mark_objects(data, os.path.join(folder, "objects-2.npy"), [1, 2, 4], 6,
                                            log=logged.append, workers=4)
            np.testing.assert_array_equal(parallel, first)


if __name__ == "__main__":
    unittest.main()
