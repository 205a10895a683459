"""Where a generator loses what its caption says, scale by scale.

    tools/py lab.diagnose_scales runs/gen5/model.pt [--decoder runs/tokenizer/tokenizer.pt]

Held-out images of the shapes world are encoded with the model's own tokenizer. Then:

1. For k = 0, 2, 4, … K, the first k scales take the real image's tokens and the model draws
   the rest with its default sampling settings (residual head on); the checker scores the
   result against the image's caption. In row K every token is real and only the residual head
   is the model's; the drop from one row to the row above it is what the model's draws at
   those scales cost.
2. Per scale, teacher-forced and without guidance: the cross-entropy and the greedy accuracy
   of the real tokens, for tokens that cover part of an object and for background tokens.
   The background's texture is random, so its tokens are partly unpredictable by design; an
   object is flat colour, so its tokens should be nearly certain.
"""
from typing import Dict, List

import numpy as np

import torch

from hart.config import SamplingDefaults
from hart.model import HartModel
from hart.sampler import generate, make_draws
from lab.data import encode_images, object_cells, object_mask
from lab.diagnosis import diagnosis_parser, model_generator, parse_diagnosis, score_captions
from lab.shapes.captions import FORMS
from lab.shapes.dataset import held_out_example


def scale_slices(patch_nums) -> List[slice]:
    ends = np.cumsum([pn * pn for pn in patch_nums])
    return [slice(int(end - pn * pn), int(end)) for pn, end in zip(patch_nums, ends)]


def forced_ladder(model: HartModel, captions: List[str], tokens: np.ndarray, steps: List[int],
                  batch: int, seed: int) -> Dict[int, Dict]:
    """k → score_captions() result when the first k scales are `tokens` [N, Σ pn²]."""
    slices = scale_slices(model.config.patch_nums)
    results = {}
    for k in steps:
        def forced_for(b, k=k):
            rows = tokens[b * batch:(b + 1) * batch]
            return [rows[:, s] for s in slices[:k]]
        results[k] = score_captions(model_generator(model, True, seed, forced_for), captions, batch)
    return results


@torch.no_grad()
def token_table(model: HartModel, images: np.ndarray, captions: List[str], tokens: np.ndarray,
                batch: int) -> List[Dict]:
    """Per scale: cross-entropy and greedy accuracy of the real tokens, object vs background."""
    c = model.config
    slices = scale_slices(c.patch_nums)
    settings = SamplingDefaults(cfg=0.0, top_k=0, top_p=0.0, temperature=1.0, smooth=False, residual=False)
    sums = [{"object": [0.0, 0.0, 0], "background": [0.0, 0.0, 0]} for _ in c.patch_nums]
    masks = [object_mask(image) for image in images]   # segmented once, pooled per scale
    for start in range(0, len(captions), batch):
        rows = tokens[start:start + batch]
        trace = generate(model, captions[start:start + batch], settings, make_draws(c, len(rows), 0),
                         [rows[:, s] for s in slices])
        for k, (pn, s) in enumerate(zip(c.patch_nums, slices)):
            logits = torch.from_numpy(trace.scales[k]["logits"][:len(rows)]).double()
            target = torch.from_numpy(rows[:, s]).long()
            nll = -torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0].numpy()
            right = (logits.argmax(-1) == target).numpy()
            for i, mask in enumerate(masks[start:start + batch]):
                on_object = object_cells(mask, pn)
                for name, cells in (("object", on_object), ("background", ~on_object)):
                    acc = sums[k][name]
                    acc[0] += float(nll[i][cells].sum())
                    acc[1] += float(right[i][cells].sum())
                    acc[2] += int(cells.sum())
    return [{name: {"ce": a[0] / max(a[2], 1), "accuracy": a[1] / max(a[2], 1), "tokens": a[2]}
             for name, a in scale.items()} for scale in sums]


def format_ladder(results: Dict[int, Dict], patch_nums) -> str:
    lines = ["| real tokens for scales | " + " | ".join(FORMS) + " | overall |",
             "|---|" + "---|" * (len(FORMS) + 1)]
    for k, r in results.items():
        label = "none" if k == 0 else f"1–{k} (up to {patch_nums[k - 1]}×{patch_nums[k - 1]})"
        lines.append(f"| {label} | " + " | ".join(f"{r['by_form'].get(f, float('nan')):.2f}" for f in FORMS)
                     + f" | {r['overall']:.3f} |")
    return "\n".join(lines)


def format_tokens(rows: List[Dict], patch_nums) -> str:
    lines = ["| scale | object tokens | CE object | CE background | greedy right, object | greedy right, background |",
             "|---|---|---|---|---|---|"]
    for pn, r in zip(patch_nums, rows):
        o, b = r["object"], r["background"]
        lines.append(f"| {pn}×{pn} | {o['tokens'] / max(o['tokens'] + b['tokens'], 1):.2f} | {o['ce']:.3f} | "
                     f"{b['ce']:.3f} | {o['accuracy']:.2f} | {b['accuracy']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = diagnosis_parser(__doc__, prog="tools/py lab.diagnose_scales")
    ap.add_argument("--images", type=int, default=80, help="held-out images (balanced across caption forms)")
    ap.add_argument("--seed", type=int, default=5, help="held-out stream seed (evaluate.py uses 0)")
    ap.add_argument("--every", type=int, default=2, help="ladder step in scales")
    a, model = parse_diagnosis(ap, argv)
    K = model.config.num_scales
    examples = [held_out_example(a.seed, i, model.config.image_size) for i in range(a.images)]
    images = np.stack([e[0] for e in examples])
    captions = [e[1] for e in examples]
    tokens, _ = encode_images(model.tokenizer, images)
    tokens = tokens.cpu().numpy()
    steps = sorted(set(range(0, K, a.every)) | {K - 1, K})
    print(f"{a.model}: {a.images} held-out images (seed {a.seed}), checker score when the first scales "
          f"are the real image's tokens")
    print(format_ladder(forced_ladder(model, captions, tokens, steps, a.batch, 1), model.config.patch_nums))
    print("\nReal tokens, teacher-forced, no guidance")
    print(format_tokens(token_table(model, images, captions, tokens, a.batch), model.config.patch_nums))


if __name__ == "__main__":
    main()
