"""Evaluation table of the shapes-world HART model.

    tools/py lab.evaluate --checkpoint runs/generator/latest.pt \
        [--tokenizer runs/tokenizer/latest.pt] [--images 100] [--captions 200] \
        [--curve runs/generator/ckpt-*.pt] [--grid docs/samples.png] [--json out.json]

(paths relative to the current folder, here the repository root)

1. Tokenizer reconstruction of held-out images: PSNR of discrete-only decoding (the multi-scale
   tokens alone) against hybrid decoding (tokens + residual, i.e. the continuous latent), and
   the checker's score on both reconstructions.
2. Generation on held-out captions, balanced across caption forms: the share of images the
   checker passes, by form, with the residual diffusion head and without it (the same token
   draws either way, so the difference is the head alone).
3. Learning curve: the generation score of earlier checkpoints against their training time
   (read from the checkpoint's optional "step" and "elapsed_s" keys).
4. A grid image of samples (+ a Markdown table of their captions).

A checkpoint is what hart/model.py's HartModel.checkpoint() writes; --tokenizer may name a
checkpoint that holds only "config" and "tokenizer".
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Dict, List

import numpy as np
import torch

from hart.saved import load_saved
from lab.diagnosis import load_any_tokenizer, load_generator, model_generator, score_captions
from lab.shapes.captions import FORMS
from lab.shapes.checker import check
from lab.shapes.dataset import held_out_captions, held_out_example
from lab.shapes.grid import save_grid


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (peak 255); inf when they are equal."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def to_uint8(unit: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [0, 1] -> uint8 [B, H, W, 3], truncating as the sampler's to_pixels."""
    return np.floor(255.0 * unit.double().numpy()).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


# 1. Tokenizer. --------------------------------------------------------------------------

@torch.no_grad()
def reconstruct(tokenizer, images: np.ndarray):
    """(discrete-only, hybrid) reconstructions, uint8 [B, H, W, 3], of uint8 images."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    f = tokenizer.encode_continuous(x).float()
    _, f_hat, _ = tokenizer.quantize.encode_indices(f)
    return to_uint8(tokenizer.decode_unit(f_hat)), to_uint8(tokenizer.decode_unit(f))


def evaluate_tokenizer(tokenizer, n: int, seed: int, size: int, batch: int = 16) -> Dict:
    rows = {'discrete': [], 'hybrid': []}
    passed = {'discrete': [], 'hybrid': [], 'original': []}
    for start in range(0, n, batch):
        examples = [held_out_example(seed, i, size) for i in range(start, min(n, start + batch))]
        images = np.stack([e[0] for e in examples])
        discrete, hybrid = reconstruct(tokenizer, images)
        for j, (_, caption, _) in enumerate(examples):
            for name, rec in (('discrete', discrete[j]), ('hybrid', hybrid[j])):
                rows[name].append(psnr(images[j], rec))
                passed[name].append(check(rec, caption)['ok'])
            passed['original'].append(check(images[j], caption)['ok'])
    return {'n': n,
            'psnr': {k: float(np.mean(v)) for k, v in rows.items()},
            'check': {k: float(np.mean(v)) for k, v in passed.items()}}


# 2. Generation: lab/diagnosis.py (score_captions, model_generator). ----------------------

# 3–4. Printing. -------------------------------------------------------------------------

def format_tokenizer(t: Dict) -> str:
    gain = t['psnr']['hybrid'] - t['psnr']['discrete']
    return '\n'.join([
        f"Tokenizer reconstruction, {t['n']} held-out images",
        '| decoding | PSNR (dB) | checker score |',
        '|---|---|---|',
        f"| discrete tokens only | {t['psnr']['discrete']:.2f} | {t['check']['discrete']:.3f} |",
        f"| hybrid (tokens + residual) | {t['psnr']['hybrid']:.2f} | {t['check']['hybrid']:.3f} |",
        f"| original images | – | {t['check']['original']:.3f} |",
        f'hybrid gain: {gain:+.2f} dB', ''])


def format_generation(results: Dict[str, Dict]) -> str:
    """results: column name -> score_captions() result."""
    names = list(results)
    n = results[names[0]]['n']
    lines = [f'Generation, {n} held-out captions (share passing the checker)',
             '| caption form | ' + ' | '.join(names) + ' |',
             '|---|' + '---|' * len(names)]
    for form in FORMS:
        if form in results[names[0]]['by_form']:
            count = results[names[0]]['count_by_form'][form]
            lines.append(f'| {form} ({count}) | ' + ' | '.join(
                f"{results[c]['by_form'][form]:.3f}" for c in names) + ' |')
    lines.append('| **overall** | ' + ' | '.join(
        f"**{results[c]['overall']:.3f}**" for c in names) + ' |')
    parts = results[names[0]]['parts']
    for part in parts:
        lines.append(f'| {part} right ({results[names[0]]["part_counts"][part]}) | ' + ' | '.join(
            f"{results[c]['parts'][part]:.3f}" for c in names) + ' |')
    return '\n'.join(lines) + '\n'


def format_curve(rows: List[Dict]) -> str:
    lines = ['Learning curve (with the residual head)',
             '| checkpoint | step | training time (h) | score |', '|---|---|---|---|']
    for r in rows:
        hours = '–' if r['elapsed_s'] is None else f"{r['elapsed_s'] / 3600:.2f}"
        step = '–' if r['step'] is None else str(r['step'])
        lines.append(f"| {r['name']} | {step} | {hours} | {r['overall']:.3f} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    ap = argparse.ArgumentParser(prog='tools/py lab.evaluate', description='Evaluation table of the shapes-world HART model.')
    ap.add_argument('--checkpoint', help='full model checkpoint (generation)')
    ap.add_argument('--tokenizer', help='checkpoint for the reconstruction table '
                                        '(default: --checkpoint)')
    ap.add_argument('--decoder', help='decode every generation checkpoint (and the reconstruction '
                                      'table) with this tokenizer: the same encoder and codebook, '
                                      'its decoder trained further')
    ap.add_argument('--images', type=int, default=100, help='held-out images for PSNR')
    ap.add_argument('--captions', type=int, default=200, help='held-out captions')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--cfg', type=float, help='override the model\'s default guidance')
    ap.add_argument('--top-k', type=int, help='override the model\'s default top-k')
    ap.add_argument('--guided-scales', type=int, help='override the model\'s guided scales (0: all)')
    ap.add_argument('--curve', nargs='*', default=[], help='earlier checkpoints, in order')
    ap.add_argument('--curve-captions', type=int, default=50)
    ap.add_argument('--grid', help='write a PNG grid of samples (and <grid>.md captions)')
    ap.add_argument('--json', help='write all numbers as JSON')
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    if not (a.checkpoint or a.tokenizer):
        ap.error('give --checkpoint and/or --tokenizer')
    torch.set_num_threads(a.threads)

    report: Dict = {'captions_seed': a.seed, 'decoder': a.decoder}
    t0 = time.time()
    decoded_with = load_any_tokenizer(a.decoder) if a.decoder else None
    tokenizer, image_size = (load_any_tokenizer(a.tokenizer) if a.tokenizer else
                             decoded_with or load_any_tokenizer(a.checkpoint))

    def generation_model(checkpoint):
        return load_generator(checkpoint, decoded_with[0] if decoded_with else None)

    overrides = {k: v for k, v in (('cfg', a.cfg), ('top_k', a.top_k), ('guided_scales', a.guided_scales))
                 if v is not None}
    report['tokenizer'] = evaluate_tokenizer(tokenizer, a.images, a.seed, image_size)
    print(format_tokenizer(report['tokenizer']), flush=True)

    if a.checkpoint:
        model = generation_model(a.checkpoint)
        captions = held_out_captions(a.captions, a.seed)
        results = {}
        for name, residual in (('with residual head', True), ('discrete only', False)):
            results[name] = score_captions(model_generator(model, residual, a.seed, **overrides),
                                           captions, a.batch, keep=4 if residual else 0)
        print(format_generation(results), flush=True)
        if a.grid:
            kept = [p for f in FORMS for p in results['with residual head']['kept'][f]]
            save_grid(a.grid, [p[0] for p in kept], [p[1] for p in kept], cols=4)
            print(f'wrote {a.grid} and {a.grid}.md')
        report['generation'] = {k: {kk: vv for kk, vv in v.items() if kk != 'kept'}
                                for k, v in results.items()}
        report['settings'] = dataclasses.asdict(
            dataclasses.replace(model.config.sampling, **overrides))
        # The curve's snapshots are drawn like the main model, whatever their own defaults.
        overrides = {k: v for k, v in report['settings'].items() if k != 'residual'}

    curve = []
    for path in a.curve:
        ck = load_saved(path)
        model = generation_model(ck)
        r = score_captions(model_generator(model, True, a.seed, **overrides), held_out_captions(
            a.curve_captions, a.seed), a.batch)
        curve.append({'name': os.path.basename(path), 'step': ck.get('step'),
                      'elapsed_s': ck.get('elapsed_s'), 'overall': r['overall'],
                      'by_form': r['by_form']})
    if curve:
        report['curve'] = curve
        print(format_curve(curve), flush=True)
    print(f'evaluation took {time.time() - t0:.0f} s')
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
