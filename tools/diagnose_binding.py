"""Where each generated image first goes wrong, by caption form.

    /usr/bin/python3 tools/diagnose_binding.py runs/gen5/model.pt [--captions 200] [--decoder ...]

The evaluation (evaluate.py) says which parts of a caption fail; with several objects those
parts fail together and hide the cause. This tool draws the evaluation's own held-out
captions with the same seeds and puts each image in the first stage of this cascade that
fails:

  fewer objects   the checker finds fewer objects than the caption names (merged or missing)
  more objects    it finds more (a split object, a stray speck of another colour)
  colours         the right number of objects, but not the named colours
  roles swapped   relation captions: both objects there, but the relation holds only with the
                  two swapped ("a red circle left of a blue square" drawn with red on the right)
  layout          a position or relation does not hold (otherwise)
  sizes           a named size is wrong
  shapes          a named shape is wrong
  right           the image passes the checker

The first four are binding failures: the model draws the right kind of scene but ties the
caption's words to the wrong objects.
"""
import os
import sys
from typing import Dict, List, Sequence

import numpy as np

TOOLS = os.path.dirname(os.path.abspath(__file__))
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import torch  # noqa: E402

from evaluate import diagnosis_parser, load_generator, model_generator  # noqa: E402
from shapes.captions import FORMS, Scene, parse_caption  # noqa: E402
from shapes.checker import check_scene, find_objects, match_objects, relation_holds  # noqa: E402
from shapes.dataset import held_out_captions  # noqa: E402

STAGES = ("fewer objects", "more objects", "colours", "roles swapped", "layout", "sizes", "shapes", "right")


def first_failure(image: np.ndarray, scene: Scene) -> str:
    """The first stage of the cascade (module docstring) that `image` fails for `scene`."""
    result = check_scene(image, scene)
    if result["ok"]:
        return "right"
    _, found = find_objects(image)
    if len(found) < scene.count:
        return "fewer objects"
    if len(found) > scene.count:
        return "more objects"
    if not (result["colors"] and result["counts"]):
        return "colours"
    if not result["relations"]:
        a, b = match_objects(scene.objects, found)
        swapped = a is not None and b is not None and relation_holds(b, a, scene.relation, image.shape[1])
        return "roles swapped" if swapped else "layout"
    if not result["positions"]:
        return "layout"
    if not result["sizes"]:
        return "sizes"
    return "shapes"


def tally(images: Sequence[np.ndarray], captions: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """form → stage → number of images whose first failure is that stage."""
    table = {form: dict.fromkeys(STAGES, 0) for form in FORMS}
    for image, caption in zip(images, captions):
        scene = parse_caption(caption)
        table[scene.form][first_failure(image[..., :3], scene)] += 1
    return table


def format_table(table: Dict[str, Dict[str, int]]) -> str:
    forms = [f for f in FORMS if sum(table[f].values())]
    lines = ["| first failure | " + " | ".join(f"{f} ({sum(table[f].values())})" for f in forms) + " | all |",
             "|---|" + "---|" * (len(forms) + 1)]
    total = sum(sum(table[f].values()) for f in forms)
    for stage in STAGES:
        shares = [table[f][stage] / sum(table[f].values()) for f in forms]
        every = sum(table[f][stage] for f in forms) / max(total, 1)
        lines.append(f"| {stage} | " + " | ".join(f"{s:.3f}" for s in shares) + f" | {every:.3f} |")
    return "\n".join(lines)


def generated(model_path: str, decoder: str, captions: List[str], seed: int, batch: int) -> List[np.ndarray]:
    """The images evaluate.py scores for these captions (same sampler settings and seeds)."""
    run = model_generator(load_generator(model_path, decoder), True, seed)
    images = []
    for b, start in enumerate(range(0, len(captions), batch)):
        images.extend(run(captions[start:start + batch], b))
    return images


def main(argv=None):
    ap = diagnosis_parser(__doc__)
    ap.add_argument("--captions", type=int, default=200, help="held-out captions (evaluate.py's, balanced by form)")
    ap.add_argument("--seed", type=int, default=0, help="caption and sampling seed (evaluate.py's default)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    captions = held_out_captions(a.captions, a.seed)
    images = generated(a.model, a.decoder, captions, a.seed, a.batch)
    print(f"{a.model}: first failure of each image, {len(captions)} held-out captions (seed {a.seed}), "
          f"share of each form")
    print(format_table(tally(images, captions)))


if __name__ == "__main__":
    main()
