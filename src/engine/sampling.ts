// Token sampling of one scale (docs/model-package.md §4 step 6), in float64:
// temperature, top-k, top-p, inverse-CDF draw in vocabulary order, and HART's Gumbel smoothing.

export interface TokenFilter {
  /** Keep logits ≥ the k-th largest; 0 (or ≥ V) turns it off. */
  topK: number;
  /** Keep the shortest most-probable prefix whose mass reaches topP; 0 turns it off. */
  topP: number;
  temperature: number;
}

/**
 * The logits of one position after temperature, top-k and top-p: removed entries are −∞.
 * `logits` is read at `[offset, offset + vocab)`.
 */
export function filterLogits(logits: ArrayLike<number>, offset: number, vocab: number, filter: TokenFilter): Float64Array {
  const kept = new Float64Array(vocab);
  for (let v = 0; v < vocab; v++) kept[v] = logits[offset + v] / filter.temperature;

  if (filter.topK > 0 && filter.topK < vocab) {
    // Ties with the k-th largest are all kept ("≥"), as a threshold on values does.
    const threshold = kthLargest(kept, filter.topK);
    for (let v = 0; v < vocab; v++) if (kept[v] < threshold) kept[v] = -Infinity;
  }

  if (filter.topP > 0) {
    const probs = softmax(kept);
    // Walk the probabilities in descending order (a native sort of the values; equal values
    // are then taken in vocabulary order) until the mass reaches topP.
    const descending = probs.slice().sort().reverse();
    let mass = 0;
    let count = 0;
    while (count < vocab && descending[count] > 0 && (count === 0 || mass < filter.topP)) mass += descending[count++];
    // A mass never reached (topP ≥ 1 and rounding) keeps every token with probability.
    const threshold = descending[count - 1];
    let tiesLeft = count;
    for (let v = 0; v < vocab; v++) if (probs[v] > threshold) tiesLeft--;
    for (let v = 0; v < vocab; v++) {
      if (probs[v] > threshold) continue;
      if (probs[v] === threshold && tiesLeft > 0) tiesLeft--;
      else kept[v] = -Infinity;
    }
  }
  return kept;
}

let heapScratch = new Float64Array(0);

/**
 * The k-th largest of `values` (0 < k < length), counting equal values separately: the value
 * an ascending sort puts at `length − k`, found with a min-heap of the k largest so far
 * (O(V log k), no sort of the whole vocabulary). Only the value matters to the "≥" threshold,
 * so the kept set is the sort's whatever order ties come in. A NaN (which the sort puts last)
 * falls back to the sort.
 */
export function kthLargest(values: Float64Array, k: number): number {
  if (heapScratch.length < k) heapScratch = new Float64Array(k);
  const heap = heapScratch;
  let size = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (x !== x) return Float64Array.from(values).sort()[values.length - k];
    if (size < k) {
      // Sift up.
      let c = size++;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (heap[p] <= x) break;
        heap[c] = heap[p];
        c = p;
      }
      heap[c] = x;
    } else if (x > heap[0]) {
      // Replace the smallest, sift down.
      let c = 0;
      for (;;) {
        let child = 2 * c + 1;
        if (child >= k) break;
        if (child + 1 < k && heap[child + 1] < heap[child]) child++;
        if (heap[child] >= x) break;
        heap[c] = heap[child];
        c = child;
      }
      heap[c] = x;
    }
  }
  return heap[0];
}

/** Softmax over float64 logits; −∞ entries get probability 0. */
export function softmax(logits: Float64Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = logits[i] === -Infinity ? 0 : Math.exp(logits[i] - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** The first index (vocabulary order) whose cumulative probability exceeds `u ∈ [0, 1)`. */
export function drawIndex(probs: Float64Array, u: number): number {
  let cumulative = 0;
  let lastKept = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    lastKept = i;
    if (cumulative > u) return i;
  }
  // Rounding can leave the total a hair under u: the last kept token is the right answer then.
  return lastKept;
}

export interface ScaleSample {
  /** Sampled token per position, `[positions]`. */
  indices: Int32Array;
  /** Filtered logits `[positions, V]`, kept only when smoothing needs them. */
  kept?: Float64Array;
}

/** Samples every position of a scale: `logits` is `[positions, V]`, one uniform per position. */
export function sampleScale(
  logits: ArrayLike<number>,
  positions: number,
  vocab: number,
  filter: TokenFilter,
  uniforms: ArrayLike<number>,
  keepFiltered: boolean,
): ScaleSample {
  const indices = new Int32Array(positions);
  const kept = keepFiltered ? new Float64Array(positions * vocab) : undefined;
  for (let p = 0; p < positions; p++) {
    const row = filterLogits(logits, p * vocab, vocab, filter);
    indices[p] = drawIndex(softmax(row), uniforms[p]);
    kept?.set(row, p * vocab);
  }
  return { indices, kept };
}

/** `E[idx]`: the codebook vectors of the sampled tokens, `[positions, Cv]`. */
export function lookupCodebook(codebook: Float32Array, channels: number, indices: Int32Array): Float32Array {
  const out = new Float32Array(indices.length * channels);
  for (let p = 0; p < indices.length; p++) {
    out.set(codebook.subarray(indices[p] * channels, (indices[p] + 1) * channels), p * channels);
  }
  return out;
}

/**
 * HART's `more_smooth`: per position, `softmax((kept·(1 + ratio) + g) / τ) · E` with Gumbel
 * noise `g = −log(−log(u))`; removed logits stay at −∞ and get no weight.
 */
export function smoothVectors(
  kept: Float64Array,
  positions: number,
  vocab: number,
  ratio: number,
  tau: number,
  gumbelUniforms: ArrayLike<number>,
  codebook: Float32Array,
  channels: number,
): Float32Array {
  const out = new Float32Array(positions * channels);
  const row = new Float64Array(vocab);
  const acc = new Float64Array(channels);
  for (let p = 0; p < positions; p++) {
    for (let v = 0; v < vocab; v++) {
      const logit = kept[p * vocab + v];
      const g = -Math.log(-Math.log(gumbelUniforms[p * vocab + v]));
      row[v] = logit === -Infinity ? -Infinity : (logit * (1 + ratio) + g) / tau;
    }
    const weights = softmax(row);
    acc.fill(0);
    for (let v = 0; v < vocab; v++) {
      const w = weights[v];
      if (w === 0) continue;
      for (let c = 0; c < channels; c++) acc[c] += w * codebook[v * channels + c];
    }
    for (let c = 0; c < channels; c++) out[p * channels + c] = acc[c];
  }
  return out;
}
