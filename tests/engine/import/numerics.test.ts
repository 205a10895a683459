// The importer's arithmetic against numpy's: float32 -> float16 rounding, 16-bit decoding and the
// text encoder's weight quantization (tools/convert/quantize_weights.py), byte for byte.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { float16BitsToFloat32, fromBfloat16, fromFloat16, toFloat16 } from '../../../src/engine/import/halfFloat';
import { quantizeInt4Blocks, quantizeInt8Columns, quantizeInt8Rows, roundHalfEven } from '../../../src/engine/import/quantize';
import { runPython } from './python';

let dir = '';
const read = (name: string) => {
  const b = readFileSync(path.join(dir, name));
  return new Uint8Array(b.buffer, b.byteOffset, b.length).slice();
};
const f32 = (name: string) => new Float32Array(read(name).buffer);
const u16 = (name: string) => new Uint16Array(read(name).buffer);
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

// Shapes of the quantization cases: K not a multiple of the block (padding), an odd block count
// (zero points padded per column), blocks of 16 and 64, columns and rows that are all zeros.
const CASES: [number, number, number][] = [[96, 40, 32], [100, 33, 32], [40, 8, 16], [200, 5, 64], [64, 3, 32]];

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'import-numerics-'));
  runPython(`
import os, sys, numpy as np
from convert.quantize_weights import quantize_int4_blocks, quantize_int8_columns, quantize_int8_rows
out = sys.argv[1]
rng = np.random.default_rng(0)
bits = rng.integers(0, 2**32, 300000, dtype=np.uint64).astype(np.uint32)
x = bits.view(np.float32)
x = x[~np.isnan(x)]
edges = np.array([0.0, -0.0, 65504, 65505, 65519.99, 65520, 65536, 1e9, 2**-24, 2**-25, 2**-25 * 1.0000001, 3 * 2**-26,
                  2**-14, 2**-14 * (1 - 2**-11), 2**-14 * (1 - 2**-12), 1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-23,
                  2**-26, 5.96e-8, np.inf, -np.inf, 1.5, -2.5], dtype=np.float32)
edges = np.concatenate([edges, -edges, rng.standard_normal(20000).astype(np.float32) * 1e-5,
                        rng.standard_normal(20000).astype(np.float32) * 3e4])
x = np.concatenate([edges, x]).astype(np.float32)
x.tofile(os.path.join(out, 'x.f32'))
x.astype(np.float16).tofile(os.path.join(out, 'x.f16'))
h = np.arange(65536, dtype=np.uint16)
h.view(np.float16).astype(np.float32).tofile(os.path.join(out, 'all_f16.f32'))
(h.astype(np.uint32) << 16).view(np.float32).tofile(os.path.join(out, 'all_bf16.f32'))
r = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 0.49999997, -7.5, 126.5, -126.5, 14.5], dtype=np.float32)
np.round(r).astype(np.float32).tofile(os.path.join(out, 'round.f32'))
r.tofile(os.path.join(out, 'round_in.f32'))
for i, (k, n, bs) in enumerate(${JSON.stringify(CASES)}):
    w = (rng.standard_normal((k, n)) * rng.choice([1e-3, 0.05, 3.0])).astype(np.float32)
    if i == 1:
        w[:, 3] = 0; w[:, 4] = np.abs(w[:, 4]); w[:, 5] = -np.abs(w[:, 5]); w[7, 6] = 1e-30
    if i == 4:
        # Values that land on .5 after division: ties must round to even.
        w[:, 0] = np.arange(k, dtype=np.float32) - 31.5; w[:, 1] = (np.arange(k, dtype=np.float32) - 30) / 4
    w.tofile(os.path.join(out, f'w{i}.f32'))
    p, s, z = quantize_int4_blocks(w, bs)
    p.tofile(os.path.join(out, f'w{i}.q4')); s.tofile(os.path.join(out, f'w{i}.s4')); z.tofile(os.path.join(out, f'w{i}.z4'))
    q, s = quantize_int8_columns(w)
    q.tofile(os.path.join(out, f'w{i}.q8c')); s.tofile(os.path.join(out, f'w{i}.s8c'))
    q, s = quantize_int8_rows(w)
    q.tofile(os.path.join(out, f'w{i}.q8r')); s.tofile(os.path.join(out, f'w{i}.s8r'))
`, [dir]);
}, 120_000);

describe('import numerics', () => {
  it('rounds float32 to float16 as numpy does (ties to even, subnormals, overflow)', () => {
    const x = f32('x.f32');
    const expected = u16('x.f16');
    const got = toFloat16(x);
    let bad = -1;
    for (let i = 0; i < x.length && bad < 0; i++) if (got[i] !== expected[i]) bad = i;
    expect(bad, bad >= 0 ? `x=${x[bad]} got ${got[bad].toString(16)} numpy ${expected[bad].toString(16)}` : '').toBe(-1);
    expect(x.length).toBeGreaterThan(290000);
  });

  it('decodes every float16 and bfloat16 bit pattern exactly', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    expect(bytesOf(fromFloat16(all))).toEqual(read('all_f16.f32'));
    expect(bytesOf(fromBfloat16(all))).toEqual(read('all_bf16.f32'));
    expect(float16BitsToFloat32(0x3c00)).toBe(1);
  });

  it('rounds half to even like np.round', () => {
    const input = f32('round_in.f32');
    expect(Array.from(input, roundHalfEven)).toEqual(Array.from(f32('round.f32')));
  });

  it.each(CASES.map((c, i) => [i, ...c]))('quantizes case %i (K %i, N %i, block %i) exactly as quantize_weights.py', (i, k, n, bs) => {
    const w = f32(`w${i}.f32`);
    const q4 = quantizeInt4Blocks(w, k, n, bs);
    expect(q4.packed).toEqual(read(`w${i}.q4`));
    expect(bytesOf(q4.scales)).toEqual(read(`w${i}.s4`));
    expect(q4.zeroPoints).toEqual(read(`w${i}.z4`));
    const q8 = quantizeInt8Columns(w, k, n);
    expect(bytesOf(q8.values)).toEqual(read(`w${i}.q8c`));
    expect(bytesOf(q8.scales)).toEqual(read(`w${i}.s8c`));
    const r8 = quantizeInt8Rows(w, k, n);
    expect(bytesOf(r8.values)).toEqual(read(`w${i}.q8r`));
    expect(bytesOf(r8.scales)).toEqual(read(`w${i}.s8r`));
  });
});
