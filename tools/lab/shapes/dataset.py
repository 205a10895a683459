"""Deterministic examples of the shapes world, held-out captions, and a .npy cache.

Every example is a pure function of (seed, index): its random generator is seeded from
(tag, stream, seed, index). The training stream and the held-out stream differ in `stream`,
so no held-out example is ever drawn from the training sequence, whatever the seeds.

Cache (paths relative to the current folder, here the repository root):
    tools/py lab.shapes.dataset --out runs/shapes-20k --n 20000
writes  <out>/images.npy   uint8 [N, size, size, 3]
        <out>/captions.json {"seed", "size", "n", "captions": [...], "forms": [...],
                             "specs": [Scene.to_dict(), ...]}
        <out>/.gitignore   so the cache never lands in git.
"""

import argparse
import json
import os
import time
from typing import List, Tuple

import numpy as np

from .captions import (COLORS, FORMS, POSITIONS, RELATIONS, SHAPES, SIZES, Scene,
                       ShapeObject, to_caption)
from .render import render_scene

TRAIN, HELD_OUT = 1, 2             # streams
_EXAMPLE_TAG, _FORM_TAG = 11, 12   # non-zero leading tags: SeedSequence ignores trailing zeros


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def random_scene(form: str, rng: np.random.Generator) -> Scene:
    """A random scene of the given caption form."""
    bg = _pick(rng, COLORS)
    others = [c for c in COLORS if c != bg]
    if form == 'relation':
        i, j = rng.choice(len(others), size=2, replace=False)
        objects = (ShapeObject(others[i], _pick(rng, SHAPES)),
                   ShapeObject(others[j], _pick(rng, SHAPES)))
        return Scene(bg, objects, _pick(rng, RELATIONS))
    obj = ShapeObject(_pick(rng, others), _pick(rng, SHAPES))
    if form == 'plain':
        return Scene(bg, (obj,))
    if form == 'size':
        return Scene(bg, (ShapeObject(obj.color, obj.shape, size=_pick(rng, SIZES)),))
    if form == 'position':
        return Scene(bg, (ShapeObject(obj.color, obj.shape, position=_pick(rng, POSITIONS)),))
    if form == 'count':
        return Scene(bg, (obj,) * int(rng.integers(2, 4)))
    raise ValueError(f'unknown caption form {form!r}')


def form_of(stream: int, seed: int, index: int) -> str:
    """Each block of len(FORMS) consecutive indices holds every form once, in shuffled order,
    so any stretch of the stream is balanced across forms."""
    block, slot = divmod(index, len(FORMS))
    order = np.random.default_rng([_FORM_TAG, stream, seed, block]).permutation(len(FORMS))
    return FORMS[order[slot]]


def _example(stream: int, seed: int, index: int, size: int, form: str = None):
    rng = np.random.default_rng([_EXAMPLE_TAG, stream, seed, index])
    scene = random_scene(form or form_of(stream, seed, index), rng)
    image, _ = render_scene(scene, rng, size)
    return image, to_caption(scene), scene


def render_example(seed: int, index: int, size: int = 128) -> Tuple[np.ndarray, str, Scene]:
    """Training example `index` of stream `seed`: (uint8 image [size, size, 3], caption, spec)."""
    return _example(TRAIN, seed, index, size)


def held_out_example(seed: int, index: int, size: int = 128) -> Tuple[np.ndarray, str, Scene]:
    """Like render_example, from the held-out stream (e.g. tokenizer reconstruction tests)."""
    return _example(HELD_OUT, seed, index, size)


def held_out_scenes(n: int, seed: int = 0) -> List[Scene]:
    """n distinct held-out scenes, forms in strict rotation (plain, size, position, ...)."""
    scenes, seen = [], set()
    for i in range(n):
        form = FORMS[i % len(FORMS)]
        for attempt in range(1000):
            rng = np.random.default_rng([_EXAMPLE_TAG, HELD_OUT, seed, i, attempt + 1])
            scene = random_scene(form, rng)
            caption = to_caption(scene)
            if caption not in seen:
                break
        seen.add(caption)
        scenes.append(scene)
    return scenes


def held_out_captions(n: int, seed: int = 0) -> List[str]:
    """n distinct captions for evaluation, balanced across caption forms."""
    return [to_caption(s) for s in held_out_scenes(n, seed)]


def map_row_shares(fn, n: int, workers: int, *args) -> list:
    """[fn(*args, first, stop) for each of `workers` shares of rows [0, n)], in row order, each in
    its own process: spawned, not forked, because the caller may already hold CUDA or OpenMP
    threads."""
    import multiprocessing
    bounds = np.linspace(0, n, min(workers, n) + 1).astype(int)
    jobs = [(*args, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    with multiprocessing.get_context('spawn').Pool(len(jobs)) as pool:
        return pool.starmap(fn, jobs)


def _render_rows(out: str, seed: int, size: int, start: int, first: int, stop: int) -> Tuple[list, list, list]:
    """Render rows [first, stop) of out/images.npy (examples start + row) in place; their
    captions, forms and specs. One worker's share of a parallel build_cache."""
    images = np.load(os.path.join(out, 'images.npy'), mmap_mode='r+')
    captions, forms, specs = [], [], []
    for row in range(first, stop):
        image, caption, scene = render_example(seed, start + row, size)
        images[row] = image
        captions.append(caption)
        forms.append(scene.form)
        specs.append(scene.to_dict())
    images.flush()
    return captions, forms, specs


def build_cache(out: str, n: int, seed: int = 0, size: int = 128, start: int = 0,
                log_every: int = 1000, workers: int = 1) -> float:
    """Render training examples [start, start + n) into out/images.npy + out/captions.json.
    Returns the seconds taken. workers > 1 renders shares of the rows in that many processes
    (a GPU machine's many cores render a large cache in seconds); the files are the same."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, '.gitignore'), 'w') as f:
        f.write('*\n')
    images = np.lib.format.open_memmap(os.path.join(out, 'images.npy'), mode='w+',
                                       dtype=np.uint8, shape=(n, size, size, 3))
    del images   # the header is written; the rows are filled through their own maps
    t0 = time.time()
    if workers > 1 and n > 1:
        parts = map_row_shares(_render_rows, n, workers, out, seed, size, start)
    else:
        parts = []
        step = log_every if log_every else n
        for first in range(0, n, max(step, 1)):
            parts.append(_render_rows(out, seed, size, start, first, min(n, first + step)))
            if log_every:
                done = min(n, first + step)
                el = time.time() - t0
                print(f'{done}/{n} examples, {el:.1f} s, {1000 * el / done:.2f} ms/example', flush=True)
    captions = [c for part in parts for c in part[0]]
    forms = [f for part in parts for f in part[1]]
    specs = [s for part in parts for s in part[2]]
    with open(os.path.join(out, 'captions.json'), 'w') as f:
        json.dump({'seed': seed, 'size': size, 'start': start, 'n': n, 'captions': captions,
                   'forms': forms, 'specs': specs}, f)
    return time.time() - t0


TRAINING_IMAGES = 20000   # the cache every shipped model was trained on


def render_if_missing(folder: str, n: int = TRAINING_IMAGES, size: int = 128, seed: int = 0, log=print,
                      workers: int = 1) -> None:
    """Render the training cache into folder once, unless it is there: runs/ is not committed,
    so a fresh clone starts without it (20,000 images take about 20 s on one core)."""
    if os.path.exists(os.path.join(folder, 'captions.json')):
        return
    log(f'rendering {n} shapes examples into {folder} (once, {workers} process(es))')
    took = build_cache(folder, n, seed=seed, size=size, log_every=0, workers=workers)
    log(f'cache written in {took:.1f} s')


def load_cache(out: str):
    """(images memmap uint8 [N, H, W, 3], metadata dict) of a cache written by build_cache."""
    with open(os.path.join(out, 'captions.json')) as f:
        meta = json.load(f)
    return np.load(os.path.join(out, 'images.npy'), mmap_mode='r'), meta


def main():
    ap = argparse.ArgumentParser(prog='tools/py lab.shapes.dataset', description='Precompute shapes-world training examples.')
    ap.add_argument('--out', required=True)
    ap.add_argument('--n', type=int, default=20000)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--start', type=int, default=0)
    ap.add_argument('--workers', type=int, default=1, help='render in this many processes')
    a = ap.parse_args()
    took = build_cache(a.out, a.n, a.seed, a.size, a.start, workers=a.workers)
    print(f'wrote {a.n} examples ({a.size}px) to {a.out} in {took:.1f} s '
          f'({1000 * took / max(a.n, 1):.2f} ms/example)')


if __name__ == '__main__':
    main()
