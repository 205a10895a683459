import { describe, expect, it } from 'vitest';
import { drawIndex, filterLogits, kthLargest, lookupCodebook, sampleScale, smoothVectors, softmax } from '../../src/engine/sampling';
import { topKAt } from '../../src/engine/samplingSettings';

const off = { topK: 0, topP: 0, temperature: 1 };
const kept = (row: Float64Array) => Array.from(row, (v, i) => (v === -Infinity ? -1 : i)).filter((i) => i >= 0);

describe('sampling', () => {
  it('draws the first index whose cumulative probability exceeds u, in vocabulary order', () => {
    const probs = new Float64Array([0.1, 0, 0.2, 0.7]);
    expect(drawIndex(probs, 0)).toBe(0);
    expect(drawIndex(probs, 0.0999)).toBe(0);
    expect(drawIndex(probs, 0.1)).toBe(2); // cumulative 0.1 does not exceed 0.1
    expect(drawIndex(probs, 0.29)).toBe(2);
    expect(drawIndex(probs, 0.31)).toBe(3);
    expect(drawIndex(probs, 0.9999999)).toBe(3);
    // A total a hair under u (rounding) picks the last kept token, never a removed one.
    expect(drawIndex(new Float64Array([0.3, 0.3, 0.3999999, 0]), 0.99999999)).toBe(2);
  });

  it('divides by the temperature before the softmax', () => {
    const logits = [0, Math.log(3)];
    expect(Array.from(softmax(filterLogits(logits, 0, 2, off)))[1]).toBeCloseTo(0.75, 12);
    expect(Array.from(softmax(filterLogits(logits, 0, 2, { ...off, temperature: 0.5 })))[1]).toBeCloseTo(0.9, 12);
  });

  it('top-k keeps every logit tied with the k-th largest', () => {
    const logits = [1, 3, 2, 3, 2, 0];
    expect(kept(filterLogits(logits, 0, 6, { ...off, topK: 1 }))).toEqual([1, 3]);
    expect(kept(filterLogits(logits, 0, 6, { ...off, topK: 2 }))).toEqual([1, 3]);
    expect(kept(filterLogits(logits, 0, 6, { ...off, topK: 3 }))).toEqual([1, 2, 3, 4]);
    expect(kept(filterLogits(logits, 0, 6, { ...off, topK: 6 }))).toEqual([0, 1, 2, 3, 4, 5]);
    expect(kept(filterLogits(logits, 0, 6, { ...off, topK: 100 }))).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('top-p keeps the shortest most-probable prefix reaching the mass, at least one token', () => {
    // Probabilities 0.5, 0.25, 0.125, 0.125 (as logits).
    const logits = [Math.log(0.125), Math.log(0.5), Math.log(0.125), Math.log(0.25)];
    expect(kept(filterLogits(logits, 0, 4, { ...off, topP: 0.5 }))).toEqual([1]); // reaches exactly 0.5
    expect(kept(filterLogits(logits, 0, 4, { ...off, topP: 0.51 }))).toEqual([1, 3]);
    expect(kept(filterLogits(logits, 0, 4, { ...off, topP: 0.75 }))).toEqual([1, 3]);
    // Equal probabilities: the earlier vocabulary index goes first.
    expect(kept(filterLogits(logits, 0, 4, { ...off, topP: 0.8 }))).toEqual([0, 1, 3]);
    expect(kept(filterLogits(logits, 0, 4, { ...off, topP: 1e-9 }))).toEqual([1]);
    expect(kept(filterLogits(logits, 0, 4, { ...off, topP: 1 }))).toEqual([0, 1, 2, 3]);
    // Top-p works on what top-k left.
    expect(kept(filterLogits(logits, 0, 4, { ...off, topK: 2, topP: 0.9 }))).toEqual([1, 3]);
  });

  it('samples a scale with one uniform per position and respects removed tokens', () => {
    const V = 3;
    const logits = new Float32Array([10, 0, 0, 0, 10, 0, 0, 0, 10]);
    const { indices } = sampleScale(logits, 3, V, { ...off, topK: 1 }, [0.99, 0.0, 0.5], false);
    expect(Array.from(indices)).toEqual([0, 1, 2]);
    const free = sampleScale(new Float32Array([0, 0, 0]), 1, V, off, [0.7], false);
    expect(Array.from(free.indices)).toEqual([2]);
  });

  it("follows HART's top-k schedule: 600 before scale 7, never past rank 300 from scale 7 on", () => {
    // A vocabulary of 1000 in shuffled order: ranks 1–300 have logit 0, ranks 301–600 logit −0.5
    // (together about 38% of the mass), the rest practically nothing.
    const V = 1000;
    const order = Array.from({ length: V }, (_, i) => (i * 379) % V); // rank → token (379 is prime to 1000)
    const rank = new Int32Array(V);
    order.forEach((token, r) => (rank[token] = r));
    const positions = 400;
    const logits = new Float32Array(positions * V);
    for (let p = 0; p < positions; p++) for (let t = 0; t < V; t++) logits[p * V + t] = rank[t] < 300 ? 0 : rank[t] < 600 ? -0.5 : -40;
    const uniforms = Array.from({ length: positions }, (_, i) => (i + 0.5) / positions);
    const schedule = { values: [600, 300], from: [0, 7] };
    for (let k = 0; k < 10; k++) {
      const { indices } = sampleScale(logits, positions, V, { ...off, topK: topKAt(schedule, k) }, uniforms, false);
      const ranks = Array.from(indices, (t) => rank[t]);
      expect(Math.max(...ranks), `scale ${k}`).toBeLessThan(k < 7 ? 600 : 300);
      if (k < 7) expect(ranks.filter((r) => r >= 300).length, `scale ${k}`).toBeGreaterThan(positions * 0.3);
    }
  });

  it('looks up codebook rows', () => {
    const codebook = new Float32Array([0, 1, 10, 11, 20, 21]);
    expect(Array.from(lookupCodebook(codebook, 2, new Int32Array([2, 0])))).toEqual([20, 21, 0, 1]);
  });

  it('smooths with softmax((kept·(1+ratio) + g)/τ)·E and gives removed tokens no weight', () => {
    const codebook = new Float32Array([1, 0, 0, 1, 5, 5]);
    const logits = new Float64Array([0, Math.log(3), -Infinity]);
    const u = Math.exp(-1); // g = −log(−log(u)) = 0
    const vectors = smoothVectors(logits, 1, 3, 0, 1, [u, u, 0.999], codebook, 2);
    expect(vectors[0]).toBeCloseTo(0.25, 6);
    expect(vectors[1]).toBeCloseTo(0.75, 6);
    // A small τ sharpens towards the arg max; ratio scales the logits.
    const sharp = smoothVectors(logits, 1, 3, 1, 0.1, [u, u, u], codebook, 2);
    expect(sharp[1]).toBeGreaterThan(0.999);
  });

  it('top-k finds the k-th largest without sorting: the value a sort gives, ties and all', () => {
    let state = 12345;
    const next = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (const vocab of [2, 3, 17, 64, 300]) {
      for (const coarse of [false, true]) {
        // Coarse values make many ties (also across the k-th place); −∞, −0 and +0 mixed in.
        const values = Float64Array.from({ length: vocab }, (_, i) =>
          i % 29 === 7 ? -Infinity : i % 31 === 5 ? (i % 2 ? -0 : 0) : coarse ? Math.floor(next() * 5) - 2 : next() * 20 - 10);
        const sorted = Float64Array.from(values).sort();
        for (let k = 1; k < vocab; k++) {
          expect(kthLargest(values, k) === sorted[vocab - k], `V=${vocab} k=${k}`).toBe(true);
          const kept = filterLogits(values, 0, vocab, { topK: k, topP: 0, temperature: 1 });
          expect(kept).toEqual(values.map((x) => (x < sorted[vocab - k] ? -Infinity : x)));
        }
      }
    }
    const withNaN = Float64Array.from([1, NaN, 3, 2]);
    expect(kthLargest(withNaN, 1)).toBeNaN();
    expect(kthLargest(withNaN, 2)).toBe(3);
  });
});

