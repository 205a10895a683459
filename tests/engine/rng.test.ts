import { describe, expect, it } from 'vitest';
import { philox4x32, Rng, Stream } from '../../src/engine/rng';

const hex = (a: Uint32Array) => Array.from(a, (x) => x.toString(16).padStart(8, '0')).join(' ');

describe('rng', () => {
  it('matches the Random123 known-answer vectors of Philox4x32-10', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    const ones = 0xffffffff;
    expect(hex(philox4x32([ones, ones, ones, ones], [ones, ones]))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe(
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    );
  });

  it('is deterministic per seed and stream, and counter-based (prefixes agree)', () => {
    const a = new Rng(7).uniforms(Stream.Token, 3, 101);
    const b = new Rng(7).uniforms(Stream.Token, 3, 101);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(new Rng(7).uniforms(Stream.Token, 3, 10))).toEqual(Array.from(a.subarray(0, 10)));
    expect(new Rng(8).uniforms(Stream.Token, 3, 4)[0]).not.toBe(a[0]);
    expect(new Rng(7).uniforms(Stream.Token, 4, 4)[0]).not.toBe(a[0]);
    expect(new Rng(7).uniforms(Stream.Gumbel, 3, 4)[0]).not.toBe(a[0]);
    // Seeds above 2^32 use the key's high word.
    expect(new Rng(2 ** 32 + 7).uniforms(Stream.Token, 3, 1)[0]).not.toBe(a[0]);
  });

  it('gives uniforms in [0, 1) with the right mean and variance', () => {
    const u = new Rng(1).uniforms(Stream.Token, 0, 100_000);
    let sum = 0;
    let sq = 0;
    let min = Infinity;
    let max = -Infinity;
    for (const v of u) {
      min = Math.min(min, v);
      max = Math.max(max, v);
      sum += v;
      sq += v * v;
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    const mean = sum / u.length;
    expect(mean).toBeCloseTo(0.5, 2);
    expect(sq / u.length - mean * mean).toBeCloseTo(1 / 12, 2);
  });

  it('gives standard normals', () => {
    const n = new Rng(2).normals(Stream.Diffusion, 5, 100_001);
    expect(n.length).toBe(100_001);
    let sum = 0;
    let sq = 0;
    for (const v of n) {
      sum += v;
      sq += v * v;
    }
    expect(sum / n.length).toBeCloseTo(0, 1);
    expect(sq / n.length).toBeCloseTo(1, 1);
    expect(Array.from(new Rng(2).normals(Stream.Diffusion, 5, 8))).toEqual(Array.from(n.subarray(0, 8)));
  });

  it('rejects seeds that are not whole non-negative numbers', () => {
    expect(() => new Rng(-1)).toThrow(/Seed/);
    expect(() => new Rng(1.5)).toThrow(/Seed/);
    expect(() => new Rng(Number.NaN)).toThrow(/Seed/);
  });
});
