// HART's rotary position tables (docs/hart.md §3, docs/model-package.md §4 step 3). Positions and
// angles are float32 arithmetic (Math.fround at each step), cos/sin are taken of the float32
// angle in float64 and rounded: the same rounding points as tools/hart/rope.py.
// Layout of both tables: [N, L, hd] with N = 2B rows, conditional rows first.
const f32 = Math.fround;

export interface RopeTables {
  cos: Float32Array;
  sin: Float32Array;
  rows: number;
  length: number;
  headDim: number;
}

/** `θ^(−step·i/hd)` for `i < count`: computed in float64, rounded to float32. */
export function inverseFrequencies(theta: number, headDim: number, step: number, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.pow(theta, (-step * i) / headDim);
  return out;
}

function fill(tables: RopeTables, row: number, position: number, angles: (j: number) => number): void {
  const base = (row * tables.length + position) * tables.headDim;
  for (let j = 0; j < tables.headDim; j++) {
    const angle = angles(j);
    tables.cos[base + j] = Math.cos(angle);
    tables.sin[base + j] = Math.sin(angle);
  }
}

function allocate(rows: number, length: number, headDim: number): RopeTables {
  const size = rows * length * headDim;
  return { cos: new Float32Array(size), sin: new Float32Array(size), rows, length, headDim };
}

/**
 * Text step (1D RoPE): conditional rows use `min(j, n−1)` (HF's `cumsum(mask) − 1`),
 * unconditional rows position 0 (the null condition), or `min(j, m−1)` for a negative prompt of
 * m tokens (a text like any other); `angle[j] = p · invFreq[j mod hd/2]`.
 */
export function textRope(images: number, contextTokens: number, promptTokens: number, headDim: number, theta: number, negativeTokens?: number): RopeTables {
  const half = headDim / 2;
  const inv = inverseFrequencies(theta, headDim, 2, half);
  const tables = allocate(2 * images, contextTokens, headDim);
  const last = Math.max(promptTokens - 1, 0);
  const negativeLast = negativeTokens === undefined ? undefined : Math.max(negativeTokens - 1, 0);
  for (let row = 0; row < 2 * images; row++) {
    const rowLast = row < images ? last : negativeLast;
    for (let j = 0; j < contextTokens; j++) {
      const p = rowLast === undefined ? 0 : Math.min(j, rowLast);
      fill(tables, row, j, (d) => f32(p * inv[d % half]));
    }
  }
  return tables;
}

/**
 * Image scale with side `pn` (2D RoPE, HART's layout): row and column coordinates
 * `(r / pn) · h + o` in float32, with `o = n − 1` on conditional rows and 0 on unconditional rows
 * (`m − 1` there with a negative prompt of m tokens);
 * `angle = [R·f, R·f, C·f, C·f]` in four blocks of hd/4, `f[i] = θ^(−4i/hd)`.
 */
export function scaleRope(
  images: number,
  side: number,
  finalSide: number,
  promptTokens: number,
  headDim: number,
  theta: number,
  negativeTokens?: number,
): RopeTables {
  const quarter = headDim / 4;
  const inv = inverseFrequencies(theta, headDim, 4, quarter);
  const tables = allocate(2 * images, side * side, headDim);
  const conditionalOffset = Math.max(promptTokens - 1, 0);
  const unconditionalOffset = negativeTokens === undefined ? 0 : Math.max(negativeTokens - 1, 0);
  for (let row = 0; row < 2 * images; row++) {
    const offset = row < images ? conditionalOffset : unconditionalOffset;
    for (let r = 0; r < side; r++) {
      const rowCoord = f32(f32(f32(r / side) * finalSide) + offset);
      for (let c = 0; c < side; c++) {
        const colCoord = f32(f32(f32(c / side) * finalSide) + offset);
        fill(tables, row, r * side + c, (d) => {
          const block = Math.floor(d / quarter);
          const coord = block < 2 ? rowCoord : colCoord;
          return f32(coord * inv[d % quarter]);
        });
      }
    }
  }
  return tables;
}

/** The first `rows` rows of the tables (the conditional ones), sharing their storage. */
export function leadingRopeRows(tables: RopeTables, rows: number): RopeTables {
  const size = rows * tables.length * tables.headDim;
  return { ...tables, rows, cos: tables.cos.subarray(0, size), sin: tables.sin.subarray(0, size) };
}
