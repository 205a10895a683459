"""What the evaluation and the diagnostics share: a trained model loaded for scoring (optionally
with a further-trained decoder), a generator of images from captions with the reference
sampler, the checker's score of generated images, and the common command line of the
diagnose_*.py tools (library; used by lab/evaluate.py and lab/diagnose_*.py).
"""
import argparse
import dataclasses
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch

from lab.shapes.captions import FORMS, parse_caption
from lab.shapes.checker import check


GenerateFn = Callable[[Sequence[str], int], np.ndarray]   # (prompts, batch index) -> uint8 [B,H,W,3]


def stated_parts(scene) -> List[str]:
    """The checker's parts a caption actually states (the others pass trivially)."""
    parts = ['background', 'colors', 'counts', 'shapes']
    if any(o.size for o in scene.objects):
        parts.append('sizes')
    if any(o.position for o in scene.objects):
        parts.append('positions')
    if scene.relation:
        parts.append('relations')
    return parts


def score_captions(generate: GenerateFn, captions: Sequence[str], batch: int,
                   keep: int = 0) -> Dict:
    """Checker score of generated images: overall, by caption form, and per checked part
(over the captions that state that part).
    `keep` > 0 also returns the first `keep` (image, caption) pairs of each form."""
    by_form: Dict[str, List[bool]] = {f: [] for f in FORMS}
    parts: Dict[str, List[bool]] = {}
    kept: Dict[str, list] = {f: [] for f in FORMS}
    for b, start in enumerate(range(0, len(captions), batch)):
        prompts = list(captions[start:start + batch])
        images = generate(prompts, b)
        for image, caption in zip(images, prompts):
            r = check(image[..., :3], caption)
            by_form[r['form']].append(r['ok'])
            for k in stated_parts(parse_caption(caption)):
                parts.setdefault(k, []).append(r[k])
            if len(kept[r['form']]) < keep:
                kept[r['form']].append((image[..., :3], caption))
    every = [ok for v in by_form.values() for ok in v]
    return {'n': len(every), 'overall': float(np.mean(every)),
            'by_form': {f: float(np.mean(v)) for f, v in by_form.items() if v},
            'count_by_form': {f: len(v) for f, v in by_form.items() if v},
            'parts': {k: float(np.mean(v)) for k, v in parts.items()},
            'part_counts': {k: len(v) for k, v in parts.items()},
            'kept': kept}


def model_generator(model, residual: bool, seed: int, forced_for: Callable[[int], list] = None,
                    **overrides) -> GenerateFn:
    """A GenerateFn running the reference sampler; batch b draws from seed (seed, b), so runs
    with and without the residual share their token draws. forced_for(b), if given, lists the
    tokens that batch b takes for its first scales instead of drawing them (diagnose_scales.py)."""
    from hart.sampler import generate, make_draws
    settings = dataclasses.replace(model.config.sampling, residual=residual, **overrides)

    def run(prompts: Sequence[str], b: int) -> np.ndarray:
        draws = make_draws(model.config, len(prompts), seed * 100003 + b,
                           smooth=settings.smooth, residual=True)
        forced = forced_for(b) if forced_for is not None else None
        return generate(model, prompts, settings, draws, forced).pixels[..., :3]
    return run


def load_any_tokenizer(path: str):
    """(tokenizer, image size) from a model checkpoint or from train_tokenizer.py's tokenizer.pt."""
    from hart.vae import load_tokenizer
    tokenizer = load_tokenizer(path)
    return tokenizer, tokenizer.vae_config.image_size


def use_decoder(model, tokenizer) -> None:
    """Make `model` decode with `tokenizer`, a copy of its own tokenizer whose decoder trained
    further (train_tokenizer.py's stage 2 leaves the encoder and codebook alone, so the model's
    tokens mean the same to it). Raises ValueError when the encoder or codebook differ: the
    same test that decides whether an encoded training cache is still valid."""
    from lab.data import tokenizer_fingerprint
    if tokenizer_fingerprint(model.tokenizer) != tokenizer_fingerprint(tokenizer):
        raise ValueError('--decoder must share the checkpoint\'s encoder and codebook')
    model.tokenizer.load_state_dict(tokenizer.state_dict())


def load_generator(checkpoint, decoder=None):
    """A model file (path or loaded dict) ready for scoring. `decoder`, a tokenizer file's path or
    a loaded tokenizer, replaces its decoder (see use_decoder)."""
    from hart.model import HartModel
    model = HartModel.from_checkpoint(checkpoint)
    if decoder is not None:
        use_decoder(model, load_any_tokenizer(decoder)[0] if isinstance(decoder, str) else decoder)
    return model


def diagnosis_parser(doc: str, prog: str = None) -> argparse.ArgumentParser:
    """The arguments the diagnose_*.py tools share: the model file, --decoder, --batch, --threads."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('model', help='model file (HartModel.checkpoint() dict)')
    ap.add_argument('--decoder', help='tokenizer whose decoder trained further (see evaluate.py --decoder)')
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--threads', type=int, default=2)
    return ap


def parse_diagnosis(ap: argparse.ArgumentParser, argv=None):
    """(arguments, model) of a diagnose_*.py tool whose parser came from diagnosis_parser."""
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    return a, load_generator(a.model, a.decoder)
