// Reads the golden fixture written by tools/export/golden.py (layout: tests/fixtures/README.md):
// a tiny model package plus golden.json and one .bin of arrays per case.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importNodeOrt } from '../../src/engine/node';
import type { Ort } from '../../src/engine/backend';
import type { InjectedDraws, SamplingSettings } from '../../src/engine/types';

export const FIXTURE = process.env.HART_FIXTURE ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/tiny');

type Dtype = 'float64' | 'float32' | 'int32' | 'uint8';
const VIEWS = { float64: Float64Array, float32: Float32Array, int32: Int32Array, uint8: Uint8Array };

export interface GoldenCase {
  name: string;
  prompt: string;
  settings: SamplingSettings;
  inputIds: number[];
  tokenCount: number;
  truncated: boolean;
  guidance: number[];
  array<T extends Dtype>(name: string, dtype: T): InstanceType<(typeof VIEWS)[T]>;
  has(name: string): boolean;
  draws(scales: number): InjectedDraws;
}

export function readGolden(dir = FIXTURE): { model: string; cases: GoldenCase[] } {
  const json = JSON.parse(readFileSync(path.join(dir, 'golden.json'), 'utf8'));
  if (json.format !== 'hart-web-golden' || json.version !== 1) throw new Error(`${dir}/golden.json: unknown golden format`);
  const cases = json.cases.map((c: any): GoldenCase => {
    const file = new Uint8Array(readFileSync(path.join(dir, c.bin)));
    const buffer = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength);
    const array = (name: string, dtype: Dtype) => {
      const entry = c.arrays[name];
      if (!entry) throw new Error(`${c.bin}: no array ${name}`);
      if (entry.dtype !== dtype) throw new Error(`${c.bin}: ${name} is ${entry.dtype}, not ${dtype}`);
      const count = entry.shape.reduce((a: number, b: number) => a * b, 1);
      return new VIEWS[dtype](buffer, entry.offset, count);
    };
    const has = (name: string) => name in c.arrays;
    return {
      ...c,
      array: array as GoldenCase['array'],
      has,
      draws(scales: number) {
        const list = <T extends Dtype>(prefix: string, dtype: T, n: number) =>
          has(`${prefix}.0`) ? Array.from({ length: n }, (_, i) => array(`${prefix}.${i}`, dtype)) : undefined;
        return {
          tokenUniforms: list('tokenUniforms', 'float64', scales) as Float64Array[],
          gumbelUniforms: list('gumbelUniforms', 'float64', scales) as Float64Array[] | undefined,
          diffusionNoise: list('diffusionNoise', 'float32', Object.keys(c.arrays).filter((k) => k.startsWith('diffusionNoise.')).length) as
            | Float32Array[]
            | undefined,
        };
      },
    };
  });
  return { model: json.model, cases };
}

export function importOrt(name: 'onnxruntime-node' | 'onnxruntime-web'): Promise<Ort> {
  return importNodeOrt(name === 'onnxruntime-node' ? 'cpu' : 'wasm');
}

/** max |a − b| relative to max |b|: the error measure of the parity checks. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} ≠ ${expected.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / (scale || 1);
}

export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} ≠ ${expected.length}`);
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
  return diff;
}
