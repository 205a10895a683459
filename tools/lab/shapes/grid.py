"""Grid images of samples for the README, written as PNG with the standard library only.

    tools/py lab.shapes.grid --out grid.png          # training examples, one row per form
The grid's captions go to a Markdown table next to it (<out>.md), since we draw no text.
"""

import argparse
import struct
import zlib
from typing import List, Sequence

import numpy as np

from .captions import FORMS
from .dataset import render_example


def write_png(path: str, rgb: np.ndarray) -> None:
    """8-bit RGB PNG of a uint8 [H, W, 3] array."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, c = rgb.shape
    if c != 3:
        raise ValueError('write_png takes RGB images')
    raw = b''.join(b'\x00' + rgb[y].tobytes() for y in range(h))   # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))

    header = struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)   # 8-bit, colour type 2 (RGB)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
                + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))


def read_png(path: str) -> np.ndarray:
    """Inverse of write_png (8-bit RGB, filter 0 rows only): for tests and quick checks."""
    with open(path, 'rb') as f:
        data = f.read()
    pos, idat, w, h = 8, b'', 0, 0
    while pos < len(data):
        n, = struct.unpack('>I', data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b'IHDR':
            w, h = struct.unpack('>II', body[:8])
        elif kind == b'IDAT':
            idat += body
        pos += 12 + n
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 3 * w + 1)
    if rows[:, 0].any():
        raise ValueError('read_png only reads unfiltered rows')
    return rows[:, 1:].reshape(h, w, 3).copy()


def grid(images: Sequence[np.ndarray], cols: int, pad: int = 4,
         fill=(255, 255, 255)) -> np.ndarray:
    """Images of one size tiled row by row with `pad` pixels of `fill` around each."""
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    out = np.empty((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), np.uint8)
    out[:] = np.array(fill, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = image[..., :3]
    return out


def captions_table(captions: Sequence[str], cols: int) -> str:
    """Markdown table of the captions in grid order."""
    lines = ['| ' + ' | '.join(f'column {c + 1}' for c in range(cols)) + ' |',
             '|' + '---|' * cols]
    for r in range(0, len(captions), cols):
        row = list(captions[r:r + cols]) + [''] * (cols - len(captions[r:r + cols]))
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines) + '\n'


def save_grid(path: str, images: Sequence[np.ndarray], captions: Sequence[str], cols: int) -> None:
    write_png(path, grid(images, cols))
    with open(path + '.md', 'w') as f:
        f.write(captions_table(captions, cols))


def examples_by_form(seed: int, per_form: int, size: int = 128):
    """(images, captions): per_form training examples of each form, one form per row."""
    found = {f: [] for f in FORMS}
    index = 0
    while any(len(v) < per_form for v in found.values()):
        image, caption, scene = render_example(seed, index, size)
        if len(found[scene.form]) < per_form:
            found[scene.form].append((image, caption))
        index += 1
    pairs: List = [p for f in FORMS for p in found[f]]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def main():
    ap = argparse.ArgumentParser(prog='tools/py lab.shapes.grid', description='Grid of shapes-world training examples.')
    ap.add_argument('--out', required=True)
    ap.add_argument('--per-form', type=int, default=6)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--size', type=int, default=128)
    a = ap.parse_args()
    images, captions = examples_by_form(a.seed, a.per_form, a.size)
    save_grid(a.out, images, captions, a.per_form)
    print(f'wrote {a.out} ({len(images)} images) and {a.out}.md')


if __name__ == '__main__':
    main()
