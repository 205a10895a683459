"""Caption grammar of the shapes world: scene spec <-> plain-English caption.

A caption names a background colour and one to three flat objects. Five caption forms:

  plain     "a red circle on a blue background"
  size      "a small yellow square on a black background"
  position  "a green triangle in the top left on a white background"
  relation  "a red circle left of a blue square on a white background"
  count     "two purple circles on an orange background"

Captions use only the words of VOCABULARY, which is the text tokenizer's vocabulary
(hart/text_vocab.py), so a caption never maps to an unknown token.
"""

from dataclasses import dataclass, asdict
from typing import Optional, Tuple

# Exact sRGB values of the palette; the checker segments images by nearest palette colour.
PALETTE = {
    'red': (220, 40, 40),
    'orange': (245, 140, 30),
    'yellow': (240, 210, 40),
    'green': (40, 170, 70),
    'blue': (40, 90, 220),
    'purple': (140, 60, 190),
    'white': (245, 245, 245),
    'black': (25, 25, 25),
}
COLORS = tuple(PALETTE)
SHAPES = ('circle', 'square', 'triangle')
PLURALS = {'circle': 'circles', 'square': 'squares', 'triangle': 'triangles'}
SIZES = ('small', 'large')
POSITIONS = ('top left', 'top right', 'bottom left', 'bottom right', 'center')
RELATIONS = ('left of', 'right of', 'above', 'below')
COUNT_WORDS = {2: 'two', 3: 'three'}
FORMS = ('plain', 'size', 'position', 'relation', 'count')

VOCABULARY = (
    'a an on the in of background red orange yellow green blue purple white black '
    'circle circles square squares triangle triangles small large top bottom left right '
    'center above below two three'
).split()


@dataclass(frozen=True)
class ShapeObject:
    color: str
    shape: str
    size: Optional[str] = None       # 'small' | 'large' | None (unspecified: in between)
    position: Optional[str] = None   # one of POSITIONS, or None (anywhere)


@dataclass(frozen=True)
class Scene:
    background: str
    objects: Tuple[ShapeObject, ...]
    relation: Optional[str] = None   # objects[0] <relation> objects[1]

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def form(self) -> str:
        # A scene mixing attributes is named by its most demanding part.
        if self.relation is not None:
            return 'relation'
        if len(self.objects) > 1:
            return 'count'
        if any(o.position for o in self.objects):
            return 'position'
        if any(o.size for o in self.objects):
            return 'size'
        return 'plain'

    def to_dict(self) -> dict:
        return {'background': self.background, 'relation': self.relation,
                'objects': [asdict(o) for o in self.objects]}

    @staticmethod
    def from_dict(d: dict) -> 'Scene':
        return Scene(d['background'], tuple(ShapeObject(**o) for o in d['objects']),
                     d.get('relation'))


def validate(scene: Scene) -> None:
    """Raise ValueError unless the scene is one the world can draw and the checker can judge."""
    if scene.background not in PALETTE:
        raise ValueError(f'unknown background colour {scene.background!r}')
    objs = scene.objects
    if not 1 <= len(objs) <= 3:
        raise ValueError('a scene has one to three objects')
    for o in objs:
        if o.color not in PALETTE or o.shape not in SHAPES:
            raise ValueError(f'unknown object {o}')
        if o.size not in (None,) + SIZES or o.position not in (None,) + POSITIONS:
            raise ValueError(f'unknown size or position in {o}')
        if o.color == scene.background:
            raise ValueError('an object never shares the background colour')
    if scene.relation is not None:
        if scene.relation not in RELATIONS or len(objs) != 2:
            raise ValueError('a relation joins exactly two objects')
        # Distinct colours let the checker tell the two objects apart.
        if objs[0].color == objs[1].color:
            raise ValueError('related objects have different colours')
        if any(o.position for o in objs):
            raise ValueError('related objects carry no position')
    elif len(objs) > 1:
        if any(o != objs[0] for o in objs):
            raise ValueError('counted objects are identical')
        if objs[0].position is not None:
            raise ValueError('counted objects carry no position')


def article(word: str) -> str:
    return 'an' if word[0] in 'aeiou' else 'a'


def _noun_phrase(o: ShapeObject) -> str:
    words = ([o.size] if o.size else []) + [o.color, o.shape]
    text = article(words[0]) + ' ' + ' '.join(words)
    if o.position:
        text += ' in the ' + o.position
    return text


def to_caption(scene: Scene) -> str:
    validate(scene)
    objs = scene.objects
    if scene.relation is not None:
        subject = f'{_noun_phrase(objs[0])} {scene.relation} {_noun_phrase(objs[1])}'
    elif len(objs) > 1:
        o = objs[0]
        subject = ' '.join([COUNT_WORDS[len(objs)]] + ([o.size] if o.size else [])
                           + [o.color, PLURALS[o.shape]])
    else:
        subject = _noun_phrase(objs[0])
    return f'{subject} on {article(scene.background)} {scene.background} background'


class _Words:
    """A cursor over caption words for the recursive-descent parser."""

    def __init__(self, text: str):
        self.words = text.strip().lower().split()
        self.i = 0

    def peek(self, k: int = 0) -> Optional[str]:
        j = self.i + k
        return self.words[j] if j < len(self.words) else None

    def take(self, allowed=None) -> str:
        w = self.peek()
        if w is None or (allowed is not None and w not in allowed):
            raise ValueError(f'unexpected {w!r} at word {self.i} (wanted {allowed})')
        self.i += 1
        return w

    def take_phrase(self, phrases) -> Optional[str]:
        """Consume the longest multi-word phrase from `phrases` found here, else None."""
        for p in sorted(phrases, key=lambda s: -len(s.split())):
            parts = p.split()
            if self.words[self.i:self.i + len(parts)] == parts:
                self.i += len(parts)
                return p
        return None


def _parse_noun_phrase(w: _Words) -> ShapeObject:
    art = w.take(('a', 'an'))
    first = w.peek()
    size = w.take(SIZES) if first in SIZES else None
    color = w.take(COLORS)
    if art != article(size or color):
        raise ValueError(f'wrong article {art!r} before {size or color!r}')
    shape = w.take(SHAPES)
    position = None
    if w.peek() == 'in' and w.peek(1) == 'the':
        w.i += 2
        position = w.take_phrase(POSITIONS)
        if position is None:
            raise ValueError(f'unknown position at word {w.i}')
    return ShapeObject(color, shape, size, position)


def parse_caption(text: str) -> Scene:
    """Caption text -> Scene; raises ValueError on anything outside the grammar."""
    w = _Words(text)
    relation = None
    if w.peek() in COUNT_WORDS.values():
        n = {v: k for k, v in COUNT_WORDS.items()}[w.take()]
        size = w.take(SIZES) if w.peek() in SIZES else None
        color = w.take(COLORS)
        shape = {v: k for k, v in PLURALS.items()}[w.take(tuple(PLURALS.values()))]
        objects = (ShapeObject(color, shape, size),) * n
    else:
        first = _parse_noun_phrase(w)
        relation = w.take_phrase(RELATIONS)
        objects = (first,) if relation is None else (first, _parse_noun_phrase(w))
    w.take(('on',))
    art = w.take(('a', 'an'))
    background = w.take(COLORS)
    if art != article(background):
        raise ValueError(f'wrong article {art!r} before {background!r}')
    w.take(('background',))
    if w.peek() is not None:
        raise ValueError(f'trailing words {w.words[w.i:]}')
    scene = Scene(background, objects, relation)
    validate(scene)
    return scene
