"""Renderer of the shapes world: scene spec -> RGB image, numpy only.

Objects are flat shapes in a square bounding box of side `side` (pixels) centred at (cx, cy):
a circle, an axis-aligned square, or a triangle pointing up (apex at the top middle, base the
full box width). Edges are anti-aliased by supersampling each object's box and box-filtering.
The background is the named colour plus a faint texture the caption does not name, kept small
enough that every background pixel is still nearest to its own palette colour.

Layout is chosen so that the caption is true under the same rules the checker applies:
positions are thirds of the image judged at the area centroid, relations are centroid
displacements dominated by the named axis, and objects never overlap.
"""

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from .captions import PALETTE, Scene, ShapeObject, validate

# Object side as a fraction of the image width, per size class.
SIDE_RANGE = {'small': (0.15, 0.25), None: (0.26, 0.34), 'large': (0.35, 0.50)}
BORDER = 0.02            # objects stay this far inside the image
GAP = 0.05               # minimum gap between two objects' boxes
CELL_MARGIN = 0.04       # centroid stays this far inside its third of the image
RELATION_MIN = 0.30      # centroid distance along a relation's axis
RELATION_ORTHO = 0.08    # centroid offset allowed across that axis

POSITION_CELLS = {  # (column, row) in thirds
    'top left': (0, 0), 'top right': (2, 0), 'bottom left': (0, 2),
    'bottom right': (2, 2), 'center': (1, 1),
}


@dataclass(frozen=True)
class Placement:
    """One drawn object, in pixels of the output image."""
    color: str
    shape: str
    cx: float    # box centre
    cy: float
    side: float

    @property
    def centroid(self) -> Tuple[float, float]:
        return self.cx, self.cy + centroid_offset(self.shape, self.side)

    def box(self) -> Tuple[float, float, float, float]:
        h = self.side / 2
        return self.cx - h, self.cy - h, self.cx + h, self.cy + h


def centroid_offset(shape: str, side: float) -> float:
    """Vertical distance from box centre down to the area centroid: an upward triangle's mass
    sits two thirds of the way from apex to base."""
    return side / 6 if shape == 'triangle' else 0.0


def boxes_apart(a: Placement, b: Placement, gap: float) -> bool:
    ax0, ay0, ax1, ay1 = a.box()
    bx0, by0, bx1, by1 = b.box()
    return bx0 - ax1 >= gap or ax0 - bx1 >= gap or by0 - ay1 >= gap or ay0 - by1 >= gap


def _side(o: ShapeObject, rng: np.random.Generator, width: int) -> float:
    lo, hi = SIDE_RANGE[o.size]
    return float(rng.uniform(lo, hi)) * width


def _free_centre(side: float, rng: np.random.Generator, width: int) -> Tuple[float, float]:
    lo, hi = side / 2 + BORDER * width, width - side / 2 - BORDER * width
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))


def _free_placement(o: ShapeObject, rng, width: int, side: float = None) -> Placement:
    """The object anywhere fully inside the image."""
    side = _side(o, rng, width) if side is None else side
    return Placement(o.color, o.shape, *_free_centre(side, rng, width), side)


def _place_in_cell(o: ShapeObject, side: float, rng, width: int) -> Placement:
    col, row = POSITION_CELLS[o.position]
    off = centroid_offset(o.shape, side)
    third, m, fit = width / 3, CELL_MARGIN * width, side / 2 + BORDER * width
    # Intersect "centroid inside the cell" with "box inside the image", in centroid units.
    x_lo, x_hi = max(col * third + m, fit), min((col + 1) * third - m, width - fit)
    y_lo, y_hi = max(row * third + m, fit + off), min((row + 1) * third - m, width - fit + off)
    if x_lo > x_hi or y_lo > y_hi:
        raise ValueError(f'side {side:.1f} does not fit the {o.position} cell')
    gx, gy = float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))
    return Placement(o.color, o.shape, gx, gy - off, side)


def _relation_holds(a: Placement, b: Placement, relation: str, width: int) -> bool:
    (ax, ay), (bx, by) = a.centroid, b.centroid
    along, ortho = {'left of': (bx - ax, by - ay), 'right of': (ax - bx, by - ay),
                    'above': (by - ay, bx - ax), 'below': (ay - by, bx - ax)}[relation]
    return along >= RELATION_MIN * width and abs(ortho) <= RELATION_ORTHO * width


def _layout_relation(scene: Scene, rng, width: int) -> List[Placement]:
    a_obj, b_obj = scene.objects
    for _ in range(5000):
        a, b = _free_placement(a_obj, rng, width), _free_placement(b_obj, rng, width)
        if _relation_holds(a, b, scene.relation, width) and boxes_apart(a, b, GAP * width):
            return [a, b]
    raise RuntimeError(f'no layout found for {scene}')


def _layout_many(scene: Scene, rng, width: int) -> List[Placement]:
    o = scene.objects[0]
    scale = 1.0
    for attempt in range(200):
        if attempt and attempt % 20 == 0:
            scale *= 0.92   # crowded: shrink the shared side a little and try again
        side = _side(o, rng, width) * scale
        placed: List[Placement] = []
        for _ in range(len(scene.objects)):
            for _ in range(100):
                p = _free_placement(o, rng, width, side)
                if all(boxes_apart(p, q, GAP * width) for q in placed):
                    placed.append(p)
                    break
            else:
                break
        if len(placed) == len(scene.objects):
            return placed
    raise RuntimeError(f'no layout found for {scene}')


def layout(scene: Scene, rng: np.random.Generator, width: int) -> List[Placement]:
    """Choose sizes and positions that make the caption of `scene` true."""
    validate(scene)
    if scene.relation is not None:
        return _layout_relation(scene, rng, width)
    if len(scene.objects) > 1:
        return _layout_many(scene, rng, width)
    o = scene.objects[0]
    side = _side(o, rng, width)
    if o.position is not None:
        return [_place_in_cell(o, side, rng, width)]
    return [_free_placement(o, rng, width, side)]


def coverage(p: Placement, x0: int, y0: int, w: int, h: int, ss: int) -> np.ndarray:
    """Fraction of each pixel of the window [y0, y0+h) x [x0, x0+w) covered by the shape,
    from an ss x ss grid of samples per pixel."""
    xs = x0 + (np.arange(w * ss) + 0.5) / ss
    ys = y0 + (np.arange(h * ss) + 0.5) / ss
    dx = xs[None, :] - p.cx
    dy = ys[:, None] - p.cy
    r = p.side / 2
    if p.shape == 'circle':
        inside = dx * dx + dy * dy <= r * r
    elif p.shape == 'square':
        inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    else:  # triangle: width grows linearly from the apex (dy = -r) to the base (dy = r)
        inside = (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    return inside.reshape(h, ss, w, ss).mean(axis=(1, 3))


def background(color: str, rng: np.random.Generator, width: int) -> np.ndarray:
    """The named colour plus one or two faint textures (gradient, stripes, grain).
    Amplitudes stay under ~25 levels so the nearest palette colour never changes
    (orange and yellow, the closest pair, are 71 levels apart)."""
    base = np.array(PALETTE[color], np.float32)
    y, x = np.mgrid[0:width, 0:width].astype(np.float32) / width
    kinds = rng.choice(['gradient', 'stripes', 'grain'], size=int(rng.integers(1, 3)),
                       replace=False)
    shade = np.zeros((width, width), np.float32)
    for kind in kinds:
        theta = rng.uniform(0, 2 * np.pi)
        u = x * np.cos(theta) + y * np.sin(theta)
        if kind == 'gradient':
            shade += rng.uniform(6, 12) * (2 * (u - u.min()) / (np.ptp(u) + 1e-6) - 1)
        elif kind == 'stripes':
            period = rng.uniform(5, 12) / width
            shade += rng.uniform(3, 6) * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
        else:
            shade += rng.normal(0, rng.uniform(1.5, 3), size=(width, width))
    return base[None, None, :] + shade[:, :, None]


def draw(placements: List[Placement], bg: np.ndarray, ss: int = 4) -> np.ndarray:
    """Composite flat anti-aliased objects over a float background; returns uint8 RGB."""
    img = bg.copy()
    width = img.shape[1]
    for p in placements:
        x0, y0, x1, y1 = p.box()
        x0, y0 = max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0)
        x1, y1 = min(int(np.ceil(x1)) + 1, width), min(int(np.ceil(y1)) + 1, img.shape[0])
        a = coverage(p, x0, y0, x1 - x0, y1 - y0, ss)[:, :, None]
        window = img[y0:y1, x0:x1]
        window *= 1 - a
        window += a * np.array(PALETTE[p.color], np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_scene(scene: Scene, rng: np.random.Generator, size: int = 128,
                 supersample: int = 4) -> Tuple[np.ndarray, List[Placement]]:
    """Draw a scene; returns (uint8 image [size, size, 3], placements)."""
    placements = layout(scene, rng, size)
    return draw(placements, background(scene.background, rng, size), supersample), placements
