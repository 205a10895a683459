"""Binding negatives: the same image under a caption that differs only in what binds to what.

A relation caption ("a red circle left of a blue square") has negatives that use the same
words: the relation flipped ("... right of ..."), the two objects' colours swapped ("a blue
circle left of a red square") and, where they differ, their shapes swapped ("a red square left
of a blue circle"). A count caption has one: the other count ("two" <-> "three"). Both have
one that names fewer objects than the image holds ("a red circle on a white background"): the
990-minute model's relations and counts failed first on objects the caption never named. None
describes the image. Teacher-forced, the 760-minute model
told them apart by almost nothing: flipping the relation changed its object tokens'
cross-entropy by 0.000 nats per token, swapping the colours by 0.05. The plain likelihood holds
that signal, but drowns it in everything else an image's tokens carry (the background's random
texture, the exact edges). `margin_loss` asks for it directly: the image's tokens must be at
least `margin` nats per token less likely under the negative than under the true caption.
train_generator.py applies it to the coarse scales only (--binding-scales), where the layout is
decided; the finer scales see the layout in their inputs, and a margin there would teach them
to redraw what the coarse scales drew.
"""
from dataclasses import replace
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from lab.shapes.captions import parse_caption, to_caption

FLIPPED = {'left of': 'right of', 'right of': 'left of', 'above': 'below', 'below': 'above'}
OTHER_COUNT = {2: 3, 3: 2}
# What each kind changes; 'flip' and 'colours' are what the 880-minute model was trained with.
KINDS = ('flip', 'colours', 'shapes', 'count', 'extra')


def negative_caption(caption: str, kind: str) -> Optional[str]:
    """A caption of (nearly) the same words that does not describe the image, or None where this
    kind does not apply:
      flip     relation captions: the relation reversed ("left of" -> "right of");
      colours  relation captions: the two objects' colours swapped;
      shapes   relation captions whose objects differ in shape: the two shapes swapped;
      count    count captions: "two" <-> "three";
      extra    relation and count captions: their first object alone, so the image holds an
               object the negative never names. (Tried once: it widened its own gap but
               left extra objects in generation as they were, and cost counts about 0.1.)"""
    if kind not in KINDS:
        raise ValueError(f"unknown negative kind {kind!r}: expected one of {', '.join(KINDS)}")
    scene = parse_caption(caption)
    if kind == 'extra':
        if scene.count < 2:
            return None
        return to_caption(replace(scene, objects=scene.objects[:1], relation=None))
    if kind == 'count':
        if scene.relation is not None or scene.count < 2:
            return None
        return to_caption(replace(scene, objects=scene.objects[:1] * OTHER_COUNT[scene.count]))
    if scene.relation is None:
        return None
    if kind == 'flip':
        return to_caption(replace(scene, relation=FLIPPED[scene.relation]))
    first, second = scene.objects
    # Related objects always differ in colour and neither has the background's, so a colour
    # swap is a valid scene; a shape swap of two equal shapes would be the caption itself.
    if kind == 'colours':
        return to_caption(replace(scene, objects=(replace(first, color=second.color),
                                                  replace(second, color=first.color))))
    if first.shape == second.shape:
        return None
    return to_caption(replace(scene, objects=(replace(first, shape=second.shape),
                                              replace(second, shape=first.shape))))


def margin_loss(ce_true: torch.Tensor, ce_negative: torch.Tensor, weights: torch.Tensor,
                margin: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(hinge loss, mean gap) from per-token cross-entropies [B, T] under the true and the
    negative caption. The gap is each image's weighted mean of (negative − true), weights [B, T]
    or [1, T]; the loss is mean(relu(margin − gap)), zero once every image clears the margin."""
    weights = weights.expand_as(ce_true)
    gap = ((ce_negative - ce_true) * weights).sum(1) / weights.sum(1).clamp(min=1e-12)
    return F.relu(margin - gap).mean(), gap.mean()
