// Weight-only quantization of the text encoder, bit for bit as the Python converter does it
// (tools/convert/quantize_weights.py, numpy): every step is a float32 operation rounded as numpy
// rounds it (Math.fround after each division), and np.round rounds half to even.

/** np.round / np.rint: to the nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties toward +∞
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const clip = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);

export interface Int4Blocks {
  /** [N, blocks, blockSize / 2]: two 4-bit values a byte, low nibble first. */
  packed: Uint8Array;
  /** [N * blocks] float32: one scale per block of a column. */
  scales: Float32Array;
  /** [N * ceil(blocks / 2)]: zero points, two a byte along each column's blocks, low nibble first. */
  zeroPoints: Uint8Array;
}

/**
 * W [K, N] (row-major) -> MatMulNBits' asymmetric 4-bit blocks along K, as
 * `quantize_int4_blocks`: the range of each block always contains 0, K is padded with zeros.
 */
export function quantizeInt4Blocks(w: Float32Array, k: number, n: number, blockSize = 32): Int4Blocks {
  if (blockSize < 16 || blockSize & (blockSize - 1)) throw new RangeError(`block_size must be a power of two >= 16, got ${blockSize}`);
  if (w.length !== k * n) throw new RangeError(`weight has ${w.length} values, not ${k}x${n}`);
  const blocks = Math.ceil(k / blockSize);
  const half = blockSize / 2;
  const packed = new Uint8Array(n * blocks * half);
  const scales = new Float32Array(n * blocks);
  const zeroBytes = (blocks + (blocks & 1)) / 2;
  const zeroPoints = new Uint8Array(n * zeroBytes);
  const q = new Uint8Array(blockSize);
  for (let col = 0; col < n; col++) {
    for (let b = 0; b < blocks; b++) {
      const start = b * blockSize;
      // Padding rows are zeros, which the range contains anyway.
      let lo = 0;
      let hi = 0;
      for (let i = start; i < Math.min(start + blockSize, k); i++) {
        const v = w[i * n + col];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      let scale = Math.fround(Math.fround(hi - lo) / 15);
      if (scale === 0) scale = 1;
      const zero = clip(roundHalfEven(Math.fround(-lo / scale)), 0, 15);
      for (let i = 0; i < blockSize; i++) {
        const v = start + i < k ? w[(start + i) * n + col] : 0;
        q[i] = clip(roundHalfEven(Math.fround(v / scale)) + zero, 0, 15);
      }
      const out = (col * blocks + b) * half;
      for (let i = 0; i < half; i++) packed[out + i] = q[2 * i] | (q[2 * i + 1] << 4);
      scales[col * blocks + b] = scale;
      zeroPoints[col * zeroBytes + (b >> 1)] |= b & 1 ? zero << 4 : zero;
    }
  }
  return { packed, scales, zeroPoints };
}

export interface Int8Quantized {
  /** int8 values, same layout as the input. */
  values: Int8Array;
  /** float32 scales: one per column (`quantizeInt8Columns`) or per row (`quantizeInt8Rows`). */
  scales: Float32Array;
}

/** W [K, N] -> int8 [K, N] and one symmetric scale per output column (`quantize_int8_columns`). */
export function quantizeInt8Columns(w: Float32Array, k: number, n: number): Int8Quantized {
  if (w.length !== k * n) throw new RangeError(`weight has ${w.length} values, not ${k}x${n}`);
  const scales = new Float32Array(n);
  const max = new Float32Array(n);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < n; j++) {
      const a = Math.abs(w[i * n + j]);
      if (a > max[j]) max[j] = a;
    }
  }
  for (let j = 0; j < n; j++) scales[j] = Math.fround(max[j] / 127) || 1;
  const values = new Int8Array(k * n);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < n; j++) values[i * n + j] = clip(roundHalfEven(Math.fround(w[i * n + j] / scales[j])), -127, 127);
  }
  return { values, scales };
}

/** Embedding [V, D] -> int8 [V, D] and one symmetric scale per row (`quantize_int8_rows`). */
export function quantizeInt8Rows(table: Float32Array, rows: number, cols: number): Int8Quantized {
  if (table.length !== rows * cols) throw new RangeError(`table has ${table.length} values, not ${rows}x${cols}`);
  const scales = new Float32Array(rows);
  const values = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(table[r * cols + c]));
    const scale = Math.fround(max / 127) || 1;
    scales[r] = scale;
    for (let c = 0; c < cols; c++) values[r * cols + c] = clip(roundHalfEven(Math.fround(table[r * cols + c] / scale)), -127, 127);
  }
  return { values, scales };
}
