import { describe, expect, it } from 'vitest';
import { inverseFrequencies, scaleRope, textRope } from '../../src/engine/rope';

const at = (t: { cos: Float32Array; length: number; headDim: number }, row: number, pos: number, d: number) =>
  t.cos[(row * t.length + pos) * t.headDim + d];
const sinAt = (t: { sin: Float32Array; length: number; headDim: number }, row: number, pos: number, d: number) =>
  t.sin[(row * t.length + pos) * t.headDim + d];

describe('rope', () => {
  it('has θ^(−2i/hd) and θ^(−4i/hd) frequencies', () => {
    expect(Array.from(inverseFrequencies(10000, 8, 2, 4))).toEqual([1, Math.fround(0.1), Math.fround(0.01), Math.fround(0.001)]);
    expect(Array.from(inverseFrequencies(10000, 8, 4, 2))).toEqual([1, Math.fround(0.01)]);
  });

  it('text step: conditional rows use min(j, n−1), unconditional rows position 0', () => {
    const t = textRope(1, 5, 3, 8, 10000); // hd 8: frequencies 1, 0.1, 0.01, 0.001
    expect([t.rows, t.length, t.headDim]).toEqual([2, 5, 8]);
    expect(at(t, 0, 0, 0)).toBe(1);
    expect(at(t, 0, 1, 0)).toBeCloseTo(Math.cos(1), 6);
    expect(at(t, 0, 4, 1)).toBeCloseTo(Math.cos(0.2), 6); // padding position 4 → p = 2
    expect(at(t, 0, 4, 5)).toBeCloseTo(Math.cos(0.2), 6); // dim j and j + hd/2 share the angle
    expect(sinAt(t, 0, 2, 0)).toBeCloseTo(Math.sin(2), 6);
    expect(sinAt(t, 0, 3, 3)).toBeCloseTo(Math.sin(0.002), 7);
    for (let j = 0; j < 5; j++) for (let d = 0; d < 8; d++) expect(at(t, 1, j, d)).toBe(1);
  });

  it('image scale: [R·f, R·f, C·f, C·f] with R = (r/pn)·h + (n−1) on conditional rows', () => {
    const t = scaleRope(1, 3, 16, 3, 8, 10000); // quarter 2: f = 1, 0.01
    const token = 1 * 3 + 2; // row 1, column 2
    const R = Math.fround(Math.fround(Math.fround(1 / 3) * 16) + 2); // 7.3333335
    const C = Math.fround(Math.fround(Math.fround(2 / 3) * 16) + 2); // 12.666667
    const f = Math.fround(0.01);
    const expected = [R, Math.fround(R * f), R, Math.fround(R * f), C, Math.fround(C * f), C, Math.fround(C * f)];
    expected.forEach((angle, d) => {
      expect(at(t, 0, token, d)).toBe(Math.fround(Math.cos(angle)));
      expect(sinAt(t, 0, token, d)).toBe(Math.fround(Math.sin(angle)));
    });
    // Unconditional rows: no offset. Token (2, 0): R = 32/3, C = 0.
    const uncond = 2 * 3;
    expect(at(t, 1, uncond, 0)).toBeCloseTo(Math.cos(32 / 3), 5);
    expect(at(t, 1, uncond, 4)).toBe(1);
    expect(sinAt(t, 1, uncond, 1)).toBeCloseTo(Math.sin(0.32 / 3 * 1.0), 5);
  });

  it('a negative prompt of m tokens gives the unconditional rows text positions min(j, m−1) and the image offset m−1', () => {
    const text = textRope(1, 5, 3, 8, 10000, 2);
    const sameCount = textRope(1, 5, 2, 8, 10000);
    // Its rows are what the conditional rows of a 2-token prompt would be.
    expect(text.cos.subarray(5 * 8)).toEqual(sameCount.cos.subarray(0, 5 * 8));
    expect(text.cos.subarray(0, 5 * 8)).toEqual(textRope(1, 5, 3, 8, 10000).cos.subarray(0, 5 * 8));
    const image = scaleRope(1, 3, 16, 3, 8, 10000, 2);
    expect(image.sin.subarray(9 * 8)).toEqual(scaleRope(1, 3, 16, 2, 8, 10000).sin.subarray(0, 9 * 8));
  });
});
