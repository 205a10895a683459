"""GenEval-style checker for the shapes world: does an RGB image show what its caption says?

1. Segment by the exact palette: each pixel takes its nearest palette colour (texture and
   anti-aliasing stay nearest to their own colour, or form thin bands handled in step 3).
2. The background is the dominant colour.
3. Each other colour's mask is eroded by one pixel (which removes specks and the thin
   blend bands that appear where two colours meet), split into connected components, and each
   surviving component is grown back by one pixel inside its colour's mask.
4. Each component is measured: shape from the fill ratio of its bounding box (circle ~0.785,
   square ~1.0, upward triangle ~0.5) plus symmetry (a triangle's apex is at the top middle),
   size class from its box width, position from its centroid (thirds of the image).
5. The caption is parsed and every statement is compared.
"""

import argparse
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from .captions import (COLORS, PALETTE, POSITIONS, RELATIONS, SHAPES, Scene, ShapeObject,
                       parse_caption, to_caption)
from .dataset import render_example

COLOR_NAMES = tuple(PALETTE)
PALETTE_RGB = np.array([PALETTE[c] for c in COLOR_NAMES], np.float32)

MIN_AREA = 0.004          # of the image; smaller components are specks
SIZE_SPLIT = 0.30         # box width / image width: below is small, above is large
RELATION_MIN = 0.10       # centroid distance along a relation's axis, / image width


@dataclass
class Component:
    color: str
    shape: str            # 'circle' | 'square' | 'triangle' | 'unknown'
    area: int
    box: Tuple[int, int, int, int]   # x0, y0, x1, y1 (exclusive)
    centroid: Tuple[float, float]    # x, y in pixels (pixel centres at +0.5)
    fill: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]


def segment(image: np.ndarray) -> np.ndarray:
    """Nearest palette colour index per pixel, int [H, W]."""
    px = image[..., :3].astype(np.float32)
    d = ((px[:, :, None, :] - PALETTE_RGB[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def _shift(mask: np.ndarray, dy: int, dx: int, fill: bool) -> np.ndarray:
    """mask moved by (dy, dx), uncovered border set to `fill`."""
    out = np.full_like(mask, fill)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


_NEIGHBOURS8 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def erode(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    for dy, dx in _NEIGHBOURS8:
        out &= _shift(mask, dy, dx, True)   # the image border does not erode
    return out


def dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    for dy, dx in _NEIGHBOURS8:
        out |= _shift(mask, dy, dx, False)
    return out


def label(mask: np.ndarray) -> Tuple[np.ndarray, int]:
    """4-connected components: labels int [H, W] (0 = outside the mask, 1..n), and n.
    Each pixel repeatedly takes the smallest index among itself and its same-mask neighbours,
    with pointer jumping (label <- label of label) so it converges in few numpy passes."""
    h, w = mask.shape
    big = h * w
    idx = np.arange(big).reshape(h, w)
    lab = np.where(mask, idx, big)
    while True:
        new = lab.copy()
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            new = np.minimum(new, np.where(mask, _shift(lab, dy, dx, big), big))
        flat = np.append(new.ravel(), big)
        new = np.where(mask, flat[flat[new]], big)
        if np.array_equal(new, lab):
            break
        lab = new
    roots = np.unique(lab[mask])
    out = np.zeros((h, w), np.int32)
    if len(roots):
        out[mask] = np.searchsorted(roots, lab[mask]) + 1
    return out, len(roots)


def regrow(labels: np.ndarray, mask: np.ndarray, steps: int = 3) -> Tuple[np.ndarray, int]:
    """Grow labelled components back into their mask, one pixel ring per step, so corners that
    erosion cut off (a triangle's acute tips) return; a pixel claimed by two components goes
    to the larger label, never to both."""
    for _ in range(steps):
        grown = labels.copy()
        for dy, dx in _NEIGHBOURS8:
            grown = np.maximum(grown, _shift(labels, dy, dx, 0))
        labels = np.where(mask & (labels == 0), grown, labels)
    return labels, int(labels.max())


def classify_shape(comp_mask: np.ndarray) -> Tuple[str, float]:
    """Shape name and fill ratio of one component cropped to its bounding box."""
    h, w = comp_mask.shape
    fill = float(comp_mask.sum()) / (h * w)
    if not 0.6 <= w / h <= 1.6:
        return 'unknown', fill       # every shape of this world has a square box
    rows = comp_mask.sum(1).astype(np.float32)
    q = max(h // 4, 1)
    top, bottom = rows[:q].mean(), rows[-q:].mean()
    taper = top / max(bottom, 1.0)   # ~0.14 for an upward triangle, ~1 for circle and square
    if taper < 0.5:
        # Apex at the top middle: the topmost rows are centred on the box.
        ys, xs = np.nonzero(comp_mask[:q])
        apex_x = xs.mean() + 0.5 if len(xs) else 0.0
        if 0.3 <= fill < 0.72 and abs(apex_x - w / 2) <= 0.15 * w:
            return 'triangle', fill
    elif taper < 1.6:
        if fill >= 0.88:
            return 'square', fill
        if fill >= 0.64:
            return 'circle', fill
    return 'unknown', fill


def find_objects(image: np.ndarray) -> Tuple[str, List[Component]]:
    """(background colour, objects found) in an RGB image."""
    seg = segment(image)
    h, w = seg.shape
    counts = np.bincount(seg.ravel(), minlength=len(COLOR_NAMES))
    bg = int(counts.argmax())
    objects = []
    for ci, color in enumerate(COLOR_NAMES):
        if ci == bg or counts[ci] < MIN_AREA * h * w:
            continue
        mask = seg == ci
        labels, n = regrow(label(erode(mask))[0], mask)
        for k in range(1, n + 1):
            comp = labels == k
            area = int(comp.sum())
            if area < MIN_AREA * h * w:
                continue
            ys, xs = np.nonzero(comp)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            shape, fill = classify_shape(comp[box[1]:box[3], box[0]:box[2]])
            objects.append(Component(color, shape, area, box,
                                     (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5), fill))
    return COLOR_NAMES[bg], objects


def position_of(centroid: Tuple[float, float], width: int, height: int) -> Optional[str]:
    col = min(int(3 * centroid[0] / width), 2)
    row = min(int(3 * centroid[1] / height), 2)
    return {(0, 0): 'top left', (2, 0): 'top right', (0, 2): 'bottom left',
            (2, 2): 'bottom right', (1, 1): 'center'}.get((col, row))


def relation_holds(a: Component, b: Component, relation: str, width: int) -> bool:
    """`a relation b` from centroids: the named axis carries a clear displacement that is
    larger than the displacement across it."""
    (ax, ay), (bx, by) = a.centroid, b.centroid
    along, ortho = {'left of': (bx - ax, by - ay), 'right of': (ax - bx, by - ay),
                    'above': (by - ay, bx - ax), 'below': (ay - by, bx - ax)}[relation]
    return along >= RELATION_MIN * width and along > abs(ortho)


def match_objects(wanted: Tuple[ShapeObject, ...], found: List[Component]) -> List[Optional[Component]]:
    """One found object per named object: same colour, preferring the same shape, largest first."""
    pool = sorted(found, key=lambda c: -c.area)
    matched = []
    for o in wanted:
        candidates = [c for c in pool if c.color == o.color]
        pick = next((c for c in candidates if c.shape == o.shape), None) or \
            (candidates[0] if candidates else None)
        if pick is not None:
            pool.remove(pick)
        matched.append(pick)
    return matched


def check_scene(image: np.ndarray, scene: Scene) -> Dict[str, object]:
    h, w = image.shape[:2]
    bg, found = find_objects(image)
    return check_objects(bg, found, scene, w, h)


def check_objects(bg: str, found: List[Component], scene: Scene, w: int, h: int) -> Dict[str, object]:
    """check_scene's result from an image's background and objects (find_objects) of size w×h."""
    wanted = scene.objects
    matched = match_objects(wanted, found)
    want_colors = [o.color for o in wanted]
    result = {
        'form': scene.form,
        'background': bg == scene.background,
        'colors': sorted(set(c.color for c in found)) == sorted(set(want_colors)),
        'counts': len(found) == len(wanted) and all(
            sum(c.color == col for c in found) == want_colors.count(col)
            for col in set(want_colors)),
        'shapes': all(m is not None and m.shape == o.shape for o, m in zip(wanted, matched)),
        'sizes': all(o.size is None or (m is not None and (m.width < SIZE_SPLIT * w)
                                        == (o.size == 'small'))
                     for o, m in zip(wanted, matched)),
        'positions': all(o.position is None or (m is not None and
                                                position_of(m.centroid, w, h) == o.position)
                         for o, m in zip(wanted, matched)),
        'relations': scene.relation is None or (
            None not in matched and relation_holds(matched[0], matched[1], scene.relation, w)),
    }
    result['ok'] = all(v for k, v in result.items() if k != 'form')
    return result


def check(image: np.ndarray, caption: str) -> Dict[str, object]:
    """{'ok', 'form', 'background', 'colors', 'shapes', 'counts', 'positions', 'relations',
    'sizes'}: each bool is whether that part of the caption holds in the image
    (True where the caption says nothing about it)."""
    return check_scene(image, parse_caption(caption))


# Validation: deliberately wrong captions must fail.
OPPOSITE_SIZE = {'small': 'large', 'large': 'small'}
FALSIFY_KINDS = ('background', 'color', 'shape', 'position', 'relation', 'count', 'size')


def falsify(scene: Scene, kind: str, rng: np.random.Generator):
    """The scene with one statement made false (a colour, shape, position, relation, count,
    size or the background), or None when the scene states nothing of that kind."""
    objs = list(scene.objects)
    used = {o.color for o in objs} | {scene.background}
    if kind == 'background':
        return replace(scene, background=str(rng.choice(sorted(set(COLORS) - used))))
    if kind == 'color':
        new = str(rng.choice(sorted(set(COLORS) - used)))
        if scene.form == 'count':   # identical objects change together
            return replace(scene, objects=tuple(replace(o, color=new) for o in objs))
        i = int(rng.integers(len(objs)))
        objs[i] = replace(objs[i], color=new)
        return replace(scene, objects=tuple(objs))
    if kind == 'shape':
        i = 0 if scene.form == 'count' else int(rng.integers(len(objs)))
        new = str(rng.choice([s for s in SHAPES if s != objs[i].shape]))
        if scene.form == 'count':
            return replace(scene, objects=tuple(replace(o, shape=new) for o in objs))
        objs[i] = replace(objs[i], shape=new)
        return replace(scene, objects=tuple(objs))
    if kind == 'position' and scene.form == 'position':
        new = str(rng.choice([p for p in POSITIONS if p != objs[0].position]))
        return replace(scene, objects=(replace(objs[0], position=new),))
    if kind == 'relation' and scene.form == 'relation':
        return replace(scene, relation=str(rng.choice([r for r in RELATIONS
                                                       if r != scene.relation])))
    if kind == 'count' and scene.form == 'count':
        return replace(scene, objects=(objs[0],) * (5 - len(objs)))   # two <-> three
    if kind == 'size' and scene.form == 'size':
        return replace(scene, objects=(replace(objs[0], size=OPPOSITE_SIZE[objs[0].size]),))
    return None


def validate_checker(n: int, seed: int = 1000, size: int = 128) -> dict:
    """Score the checker on n freshly rendered training-stream examples: 'accept' is the share
    of true captions it passes, 'reject' maps each kind of falsified caption to the share it
    fails (over the examples that state that kind of thing), with 'n' per kind."""
    rng = np.random.default_rng(seed)
    accepted, by_form, rejected = [], {}, {k: [] for k in FALSIFY_KINDS}
    for i in range(n):
        image, caption, scene = render_example(seed, i, size)
        ok = check(image, caption)['ok']
        accepted.append(ok)
        by_form.setdefault(scene.form, []).append(ok)
        for kind in FALSIFY_KINDS:
            wrong = falsify(scene, kind, rng)
            if wrong is not None:
                rejected[kind].append(not check(image, to_caption(wrong))['ok'])
    return {'accept': float(np.mean(accepted)),
            'accept_by_form': {f: float(np.mean(v)) for f, v in sorted(by_form.items())},
            'reject': {k: float(np.mean(v)) for k, v in rejected.items() if v},
            'reject_n': {k: len(v) for k, v in rejected.items()}}


def main():
    ap = argparse.ArgumentParser(description='Validate the shapes-world checker on rendered '
                                             'examples with true and falsified captions.')
    ap.add_argument('--n', type=int, default=500)
    ap.add_argument('--seed', type=int, default=1000)
    ap.add_argument('--size', type=int, default=128)
    a = ap.parse_args()
    r = validate_checker(a.n, a.seed, a.size)
    print(f"true captions accepted: {r['accept']:.3f} over {a.n}  "
          + '  '.join(f'{f} {v:.3f}' for f, v in r['accept_by_form'].items()))
    for kind, v in r['reject'].items():
        print(f"wrong {kind:10s} rejected: {v:.3f} over {r['reject_n'][kind]}")


if __name__ == '__main__':
    main()
