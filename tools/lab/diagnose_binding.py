"""Where each generated image first goes wrong, by caption form.

    tools/py lab.diagnose_binding runs/gen5/model.pt [--captions 200] [--decoder ...]

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

With --attention N it also measures whether attention does the binding: on N held-out
relation images (two colours), teacher-forced, per block and scale, the attention that the
image tokens over one object give to that object's colour word ("own") and to the other
object's colour word ("other"), and the share of their attention on all colour words and on
the padding slots of the text.

With --negatives N it measures whether the model knows the binding at all, apart from
sampling: on N held-out relation images and N count images, teacher-forced, how much less likely the
image's object tokens are under a caption of the same words that does not describe it (the
relation flipped, the two colours or shapes swapped, the other count; binding_negatives.py) than under its own caption,
in nats per object token, on the coarse scales (up to 6×6) and the finer ones, and the share of
images where the negative is the less likely. A model that ignores the relation word scores 0.
"""
from typing import Dict, List, Sequence

import numpy as np
import torch

from hart.text_vocab import split_words
from lab.data import encode_images, object_cells, object_tokens
from lab.diagnosis import diagnosis_parser, model_generator, parse_diagnosis
from lab.generator.binding_negatives import negative_caption
from lab.generator.forward import (RopeCache, caption_ce, caption_context, coarse_token_count, teacher_inputs,
                                   training_forward)
from lab.shapes.captions import FORMS, Scene, parse_caption
from lab.shapes.checker import COLOR_NAMES, check_objects, find_objects, match_objects, relation_holds, segment
from lab.shapes.dataset import held_out_captions, held_out_example

STAGES = ("fewer objects", "more objects", "colours", "roles swapped", "layout", "sizes", "shapes", "right")


def first_failure(image: np.ndarray, scene: Scene) -> str:
    """The first stage of the cascade (module docstring) that `image` fails for `scene`."""
    background, found = find_objects(image)
    result = check_objects(background, found, scene, image.shape[1], image.shape[0])
    if result["ok"]:
        return "right"
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


def held_out_of_forms(n: int, seed: int, size: int, forms=("relation",)) -> List[tuple]:
    """The first n held-out examples (image, caption, scene) of these caption forms. Related
    objects always differ in colour (captions.validate), so relations suit the colour tables."""
    found, index = [], 0
    while len(found) < n:
        image, caption, scene = held_out_example(seed, index, size)
        index += 1
        if scene.form in forms:
            found.append((image, caption, scene))
    return found


@torch.no_grad()
def attention_table(model, examples: List[tuple]) -> List[List[Dict[str, float]]]:
    """Per block, per scale after the first: mean attention of the tokens over one object (cells
    it covers and the other does not) to its own colour word and to the other's, and the share of
    all image tokens' attention on the colour words and on the padding slots."""
    c = model.config
    images = np.stack([e[0] for e in examples])
    captions = [e[1] for e in examples]
    text, n_valid = caption_context(model, captions)
    tokens = encode_images(model.tokenizer, images)[0]
    record = []
    training_forward(model.transformer, text, n_valid, teacher_inputs(model.tokenizer.quantize, tokens),
                     RopeCache(model.transformer), record=record)
    # Slots of the colour words that fit the context window: the objects' two, then the background's.
    colour_slots = [[p for p, w in enumerate(split_words(cap)[:c.context_tokens]) if w in COLOR_NAMES]
                    for cap in captions]
    segments = [segment(image) for image in images]
    table = []
    for levels in record:
        rows = []
        for pn, weights in zip(c.patch_nums[1:], levels[1:]):
            own, other, colours, padding = [], [], [], []
            for j, (_, _, scene) in enumerate(examples):
                cells = [object_cells(segments[j] == COLOR_NAMES.index(o.color), pn) for o in scene.objects]
                for a, b in ((0, 1), (1, 0)):
                    only = torch.from_numpy(cells[a] & ~cells[b])
                    if only.any() and len(colour_slots[j]) >= 2:
                        own.append(float(weights[j, only, colour_slots[j][a]].mean()))
                        other.append(float(weights[j, only, colour_slots[j][b]].mean()))
                colours.append(float(weights[j][:, colour_slots[j]].sum(-1).mean()))
                padding.append(float(weights[j][:, n_valid[j]:].sum(-1).mean()))
            rows.append({"scale": pn, "own": float(np.mean(own)) if own else float("nan"),
                         "other": float(np.mean(other)) if other else float("nan"),
                         "colours": float(np.mean(colours)), "padding": float(np.mean(padding))})
        table.append(rows)
    return table


def format_attention(table: List[List[Dict[str, float]]]) -> str:
    scales = [r["scale"] for r in table[0]]
    lines = ["| block | " + " | ".join(f"{pn}×{pn}" for pn in scales) + " |",
             "|---|" + "---|" * len(scales)]
    for b, rows in enumerate(table):
        lines.append(f"| {b} | " + " | ".join(f"{r['own']:.3f} / {r['other']:.3f} · {r['colours']:.2f} / "
                                                f"{r['padding']:.2f}" for r in rows) + " |")
    return "\n".join(lines)


NEGATIVE_KINDS = (("flipped relation", "flip"), ("swapped colours", "colours"), ("swapped shapes", "shapes"),
                  ("changed count", "count"), ("object left out", "extra"))


# The true captions are scored in one batch and each kind's negatives in a batch of their own
# rows, so even a caption-blind model's two scores differ by float rounding (~1e-8 nats); gaps
# below this count as no preference.
ROUNDING_NATS = 1e-6


@torch.no_grad()
def negative_gaps(model, examples: List[tuple], coarse_scales: int = 6) -> Dict[str, Dict[str, float]]:
    """Per negative kind (NEGATIVE_KINDS, over the examples it applies to) and token range
    ('coarse', 'fine', 'all'): the mean over images of (CE under the negative − CE under the
    caption), averaged over each image's object tokens, the share of images where it is above
    ROUNDING_NATS, and
    the number of images ('n')."""
    c = model.config
    images = np.stack([e[0] for e in examples])
    tokens = encode_images(model.tokenizer, images)[0]
    inputs = teacher_inputs(model.tokenizer.quantize, tokens)
    on_object = torch.from_numpy(object_tokens(images, c.patch_nums)).float()
    rope = RopeCache(model.transformer)
    split = coarse_token_count(c, coarse_scales)
    ranges = {"coarse": slice(0, split), "fine": slice(split, None), "all": slice(0, None)}
    true = caption_ce(model, [e[1] for e in examples], inputs, tokens, rope)
    table = {}
    for kind, name in NEGATIVE_KINDS:
        negatives = [negative_caption(e[1], name) for e in examples]
        rows = [i for i, n in enumerate(negatives) if n is not None]
        if not rows:
            continue
        gap = caption_ce(model, [negatives[i] for i in rows], inputs[rows], tokens[rows], rope) - true[rows]
        table[kind] = {"n": len(rows)}
        for part, cut in ranges.items():
            w = on_object[rows, cut]
            per_image = (gap[:, cut] * w).sum(1) / w.sum(1).clamp(min=1.0)
            table[kind][part] = float(per_image.mean())
            table[kind][part + " share"] = float((per_image > ROUNDING_NATS).float().mean())
    return table


def format_gaps(table: Dict[str, Dict[str, float]]) -> str:
    lines = ["| negative | images | coarse (≤ 6×6) | finer | all scales |", "|---|---|---|---|---|"]
    for kind, row in table.items():
        lines.append(f"| {kind} | {row['n']} | " + " | ".join(f"{row[r]:+.3f} ({row[r + ' share']:.2f})"
                                                for r in ("coarse", "fine", "all")) + " |")
    return "\n".join(lines)


def generated(model, captions: List[str], seed: int, batch: int) -> List[np.ndarray]:
    """The images evaluate.py scores for these captions (same sampler settings and seeds)."""
    run = model_generator(model, True, seed)
    images = []
    for b, start in enumerate(range(0, len(captions), batch)):
        images.extend(run(captions[start:start + batch], b))
    return images


def main(argv=None):
    ap = diagnosis_parser(__doc__, prog="tools/py lab.diagnose_binding")
    ap.add_argument("--captions", type=int, default=200,
                    help="held-out captions (evaluate.py's, balanced by form; 0: no cascade table)")
    ap.add_argument("--seed", type=int, default=0, help="caption and sampling seed (evaluate.py's default)")
    ap.add_argument("--attention", type=int, default=0, help="also the attention table on this many relation images")
    ap.add_argument("--negatives", type=int, default=0,
                    help="also the binding-negative gaps on this many relation and this many count images")
    a, model = parse_diagnosis(ap, argv)
    if a.captions:
        captions = held_out_captions(a.captions, a.seed)
        print(f"{a.model}: first failure of each image, {len(captions)} held-out captions (seed {a.seed}), "
              f"share of each form")
        print(format_table(tally(generated(model, captions, a.seed, a.batch), captions)))
    if a.attention:
        examples = held_out_of_forms(a.attention, a.seed + 7, model.config.image_size)
        print(f"\n{a.model}: attention to the colour words, {a.attention} held-out relation images "
              f"(seed {a.seed + 7}), teacher-forced; own word / other object's word · all colour words / padding")
        print(format_attention(attention_table(model, examples)))
    if a.negatives:
        examples = (held_out_of_forms(a.negatives, a.seed + 5, model.config.image_size)
                    + held_out_of_forms(a.negatives, a.seed + 5, model.config.image_size, ("count",)))
        print(f"\n{a.model}: object tokens' cross-entropy under a binding negative minus under the caption, "
              f"nats per token (share of images where the negative is less likely), held-out images "
              f"(seed {a.seed + 5}: {a.negatives} relation and {a.negatives} count images, each kind over "
              f"those it applies to), teacher-forced")
        print(format_gaps(negative_gaps(model, examples)))


if __name__ == "__main__":
    main()
