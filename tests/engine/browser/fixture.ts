// The golden fixture as the browser pages see it (served under /fixture/), and the comparisons
// both pages report: tokens per scale, logits relative to each scale's largest value, pixels.
// Not a vitest file: run.mjs bundles it into page.ts and workerPage.ts.
import type { InjectedDraws } from '../../../src/engine/types';

type Views = typeof Float64Array | typeof Float32Array | typeof Int32Array | typeof Uint8Array;

export interface GoldenCase {
  name: string;
  prompt: string;
  settings: { cfg: number; topK: number; topP: number; temperature: number; smooth: boolean; residual: boolean };
  draws: InjectedDraws;
  pixels: Uint8Array;
  tokens: Int32Array[];
  logits: Float32Array[];
}

export async function goldenCases(base = '/fixture/'): Promise<GoldenCase[]> {
  const golden = await (await fetch(`${base}golden.json`)).json();
  const cases: GoldenCase[] = [];
  for (const c of golden.cases) {
    const buffer = await (await fetch(`${base}${c.bin}`)).arrayBuffer();
    const array = (name: string, View: Views) => {
      const e = c.arrays[name];
      return new View(buffer, e.offset, e.shape.reduce((a: number, b: number) => a * b, 1));
    };
    // Keys like `tokenUniforms.3` sort as strings; order them by their scale number.
    const list = (prefix: string, View: Views) =>
      Object.keys(c.arrays)
        .filter((k) => k.startsWith(`${prefix}.`))
        .sort((a, b) => Number(a.slice(prefix.length + 1)) - Number(b.slice(prefix.length + 1)))
        .map((k) => array(k, View));
    const scales = list('tokenUniforms', Float64Array).length;
    cases.push({
      name: c.name,
      prompt: c.prompt,
      settings: c.settings,
      draws: {
        tokenUniforms: list('tokenUniforms', Float64Array) as Float64Array[],
        gumbelUniforms: c.settings.smooth ? (list('gumbelUniforms', Float64Array) as Float64Array[]) : undefined,
        diffusionNoise: c.settings.residual ? (list('diffusionNoise', Float32Array) as Float32Array[]) : undefined,
      },
      pixels: array('pixels', Uint8Array) as Uint8Array,
      tokens: Array.from({ length: scales }, (_, k) => array(`scales.${k}.tokens`, Int32Array) as Int32Array),
      logits: Array.from({ length: scales }, (_, k) => array(`scales.${k}.logits`, Float32Array) as Float32Array),
    });
  }
  return cases;
}

export function maxPixelDiff(expected: ArrayLike<number>, actual: ArrayLike<number>): number {
  if (expected.length !== actual.length) return Infinity;
  let max = 0;
  for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(expected[i] - actual[i]));
  return max;
}

/** Scales whose sampled tokens differ from the reference (missing scales count as different). */
export function tokenMismatches(expected: Int32Array[], actual: ArrayLike<number>[] | undefined): number[] {
  return expected.flatMap((ref, k) => {
    const got = actual?.[k];
    const same = got !== undefined && got.length === ref.length && ref.every((v, i) => v === got[i]);
    return same ? [] : [k];
  });
}

/** Largest logit error of any scale, relative to that scale's largest reference value. */
export function logitsError(expected: Float32Array[], actual: (k: number) => Float32Array): number {
  return Math.max(
    ...expected.map((ref, k) => {
      const got = actual(k);
      if (got.length !== ref.length) return Infinity;
      let diff = 0;
      let scale = 0;
      ref.forEach((v, i) => {
        diff = Math.max(diff, Math.abs(v - got[i]));
        scale = Math.max(scale, Math.abs(v));
      });
      return diff / scale;
    }),
  );
}

export function sameBytes(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return a.length === b.length && maxPixelDiff(a, b) === 0;
}
