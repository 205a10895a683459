// Weight maps: each weight-derived byte range of a package as an expression over the published
// tensors (docs/model-package.md, "Skeletons and weight maps"). This evaluates one expression
// on typed arrays, exactly as the Python converter computes it (tools/convert/weight_map.py):
// copies (transpose, reshape, slice, concat, stack), zeros and constants, float16 rounding, the
// text encoder's quantization parts, HART's level embedding and the fitted preview map.
import { CheckpointError } from '../errors';
import { toFloat16 } from './halfFloat';
import { quantizeInt4Blocks, quantizeInt8Columns, quantizeInt8Rows } from './quantize';

export type ArrayDtype = 'float32' | 'float16' | 'int8' | 'uint8' | 'int32' | 'int64';
type Data = Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array | BigInt64Array;

export interface NDArray {
  dtype: ArrayDtype;
  shape: number[];
  data: Data;
}

export type Expr =
  | { source: string; key: string }
  | { op: 'transpose'; perm: number[]; x: Expr }
  | { op: 'reshape'; shape: number[]; x: Expr }
  | { op: 'slice'; axis: number; start: number; end: number; x: Expr }
  | { op: 'concat'; axis: number; xs: Expr[] }
  | { op: 'stack'; axis?: number; xs: Expr[] }
  | { op: 'zeros'; shape: number[]; dtype?: ArrayDtype }
  | { op: 'constant'; offset: number; length: number; dtype: ArrayDtype; shape: number[] }
  | { op: 'fp16'; x: Expr }
  | { op: 'int4'; x: Expr; block: number; part: 'weight' | 'scales' | 'zeros' }
  | { op: 'int8cols'; x: Expr; part: 'weight' | 'scale' }
  | { op: 'int8rows'; x: Expr; part: 'weight' | 'scale' }
  | { op: 'levelEmbed'; sinusoid: Expr; w1: Expr; b1: Expr; w2: Expr; b2: Expr }
  | { op: 'preview'; part: 'weight' | 'bias' };

export interface WeightMapContext {
  /** A published tensor as float32 (`source` names the published file set, `key` the tensor). */
  source(source: string, key: string, signal?: AbortSignal): Promise<NDArray>;
  /** Bytes `[offset, offset + length)` of the skeleton's constants.bin. */
  constants(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** The preview map: weight [3, Cv] and bias [3], float32. */
  preview(signal?: AbortSignal): Promise<{ weight: NDArray; bias: NDArray }>;
}

const CONSTRUCTORS = {
  float32: Float32Array, float16: Uint16Array, int8: Int8Array, uint8: Uint8Array, int32: Int32Array, int64: BigInt64Array,
} as const;
export const ARRAY_DTYPE_BYTES: Record<ArrayDtype, number> = { float32: 4, float16: 2, int8: 1, uint8: 1, int32: 4, int64: 8 };

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function allocate(dtype: ArrayDtype, n: number): Data {
  return new CONSTRUCTORS[dtype](n);
}

function fail(message: string): never {
  throw new CheckpointError(`weight map: ${message}`);
}

export function transpose(x: NDArray, perm: number[]): NDArray {
  const rank = x.shape.length;
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) fail(`transpose perm [${perm}] does not fit shape [${x.shape}]`);
  if (perm.every((p, i) => p === i)) return x;
  const shape = perm.map((p) => x.shape[p]);
  const inStrides = new Array(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) inStrides[d] = inStrides[d + 1] * x.shape[d + 1];
  const strides = perm.map((p) => inStrides[p]);
  const n = count(shape);
  const out = allocate(x.dtype, n);
  if (n === 0) return { dtype: x.dtype, shape, data: out };
  const src = x.data as unknown as ArrayLike<number>;
  const dst = out as unknown as number[];
  const last = rank - 1;
  const index = new Array(rank).fill(0);
  let at = 0;
  for (let i = 0; i < n; ) {
    // The innermost axis in one run.
    const stride = strides[last];
    for (let j = 0; j < shape[last]; j++) dst[i++] = src[at + j * stride];
    for (let d = last - 1; d >= 0; d--) {
      index[d]++;
      at += strides[d];
      if (index[d] < shape[d]) break;
      at -= strides[d] * shape[d];
      index[d] = 0;
    }
  }
  return { dtype: x.dtype, shape, data: out };
}

export function reshape(x: NDArray, shape: number[]): NDArray {
  if (count(shape) !== x.data.length) fail(`cannot reshape [${x.shape}] to [${shape}]`);
  return { dtype: x.dtype, shape: [...shape], data: x.data };
}

export function slice(x: NDArray, axis: number, start: number, end: number): NDArray {
  if (axis < 0 || axis >= x.shape.length) fail(`slice axis ${axis} outside shape [${x.shape}]`);
  // Python slice semantics: clipped to the axis.
  const size = x.shape[axis];
  const lo = Math.max(0, Math.min(start, size));
  const hi = Math.max(lo, Math.min(end, size));
  const outer = count(x.shape.slice(0, axis));
  const inner = count(x.shape.slice(axis + 1));
  const shape = [...x.shape];
  shape[axis] = hi - lo;
  const out = allocate(x.dtype, outer * (hi - lo) * inner);
  for (let o = 0; o < outer; o++) {
    const from = (o * size + lo) * inner;
    (out as Float32Array).set((x.data as Float32Array).subarray(from, from + (hi - lo) * inner), o * (hi - lo) * inner);
  }
  return { dtype: x.dtype, shape, data: out };
}

export function concat(xs: NDArray[], axis: number): NDArray {
  if (!xs.length) fail('concat of nothing');
  const rank = xs[0].shape.length;
  const dtype = xs[0].dtype;
  for (const x of xs) {
    if (x.dtype !== dtype || x.shape.length !== rank || x.shape.some((d, i) => i !== axis && d !== xs[0].shape[i])) {
      fail(`concat of [${xs.map((a) => `${a.dtype} [${a.shape}]`).join(', ')}] along axis ${axis}`);
    }
  }
  const outer = count(xs[0].shape.slice(0, axis));
  const inner = count(xs[0].shape.slice(axis + 1));
  const total = xs.reduce((s, x) => s + x.shape[axis], 0);
  const shape = [...xs[0].shape];
  shape[axis] = total;
  const out = allocate(dtype, outer * total * inner);
  let offset = 0;
  for (let o = 0; o < outer; o++) {
    for (const x of xs) {
      const run = x.shape[axis] * inner;
      (out as Float32Array).set((x.data as Float32Array).subarray(o * run, (o + 1) * run), offset);
      offset += run;
    }
  }
  return { dtype, shape, data: out };
}

/**
 * HART's level MLP (Linear(256, C) -> SiLU -> Linear(C, C)) in the fixed order that
 * `level_embedding` spells out: float64 throughout, each dot product summed from index 0 up
 * starting at +0, the bias added after the sum, SiLU as h / (1 + exp(-h)), one float32 rounding.
 */
export function levelEmbedding(s: NDArray, w1: NDArray, b1: NDArray, w2: NDArray, b2: NDArray): NDArray {
  const [rows, inDim] = s.shape;
  const [hidden, inDim1] = w1.shape;
  const [outDim, hidden2] = w2.shape;
  if (inDim !== inDim1 || hidden !== hidden2 || b1.data.length !== hidden || b2.data.length !== outDim) {
    fail(`levelEmbed shapes do not fit: sinusoid [${s.shape}], w1 [${w1.shape}], w2 [${w2.shape}]`);
  }
  const S = s.data as Float32Array;
  const W1 = w1.data as Float32Array;
  const B1 = b1.data as Float32Array;
  const W2 = w2.data as Float32Array;
  const B2 = b2.data as Float32Array;
  const out = new Float32Array(rows * outDim);
  const h = new Float64Array(hidden);
  const a = new Float64Array(hidden);
  for (let r = 0; r < rows; r++) {
    h.fill(0);
    for (let i = 0; i < inDim; i++) {
      const si = S[r * inDim + i];
      for (let j = 0; j < hidden; j++) h[j] += si * W1[j * inDim + i];
    }
    for (let j = 0; j < hidden; j++) {
      const v = h[j] + B1[j];
      a[j] = v / (1 + Math.exp(-v));
    }
    for (let j = 0; j < outDim; j++) {
      let acc = 0;
      for (let i = 0; i < hidden; i++) acc += a[i] * W2[j * hidden + i];
      out[r * outDim + j] = acc + B2[j];
    }
  }
  return { dtype: 'float32', shape: [rows, outDim], data: out };
}

function matrix(x: NDArray, op: string): [Float32Array, number, number] {
  if (x.dtype !== 'float32' || x.shape.length !== 2) fail(`${op} needs a float32 matrix, got ${x.dtype} [${x.shape}]`);
  return [x.data as Float32Array, x.shape[0], x.shape[1]];
}

/**
 * Evaluates expressions; a quantization's three parts (and a tensor read for several
 * expressions in a row) are computed once: the last results are kept by their expression.
 */
export class WeightMapEvaluator {
  private readonly memo = new Map<string, Promise<unknown>>();
  private readonly order: string[] = [];

  constructor(private readonly ctx: WeightMapContext, private readonly keep = 8) {}

  private remember<T>(key: string, make: () => Promise<T>): Promise<T> {
    const found = this.memo.get(key);
    if (found) return found as Promise<T>;
    const made = make();
    this.memo.set(key, made);
    this.order.push(key);
    while (this.order.length > this.keep) this.memo.delete(this.order.shift()!);
    made.catch(() => this.memo.delete(key));
    return made;
  }

  /** Whether every published tensor the expression reads is kept (reading it again costs nothing). */
  holds(expr: Expr): boolean {
    const reads = sourcesOf(expr);
    return reads.length > 0 && reads.every(({ source, key }) => this.memo.has(`source:${source}:${key}`));
  }

  /** Forgets the kept results (between files: their tensors are not read again). */
  clear(): void {
    this.memo.clear();
    this.order.length = 0;
  }

  async evaluate(expr: Expr, signal?: AbortSignal): Promise<NDArray> {
    if ('source' in expr) {
      return this.remember(`source:${expr.source}:${expr.key}`, () => this.ctx.source(expr.source, expr.key, signal));
    }
    const ev = (x: Expr) => this.evaluate(x, signal);
    switch (expr.op) {
      case 'transpose':
        return transpose(await ev(expr.x), expr.perm);
      case 'reshape':
        return reshape(await ev(expr.x), expr.shape);
      case 'slice':
        return slice(await ev(expr.x), expr.axis, expr.start, expr.end);
      case 'concat':
        return concat(await Promise.all(expr.xs.map(ev)), expr.axis);
      case 'stack': {
        const xs = await Promise.all(expr.xs.map(ev));
        const axis = expr.axis ?? 0;
        return concat(xs.map((x) => reshape(x, [...x.shape.slice(0, axis), 1, ...x.shape.slice(axis)])), axis);
      }
      case 'zeros':
        return { dtype: expr.dtype ?? 'float32', shape: [...expr.shape], data: allocate(expr.dtype ?? 'float32', count(expr.shape)) };
      case 'constant': {
        const bytes = await this.ctx.constants(expr.offset, expr.length, signal);
        const itemBytes = ARRAY_DTYPE_BYTES[expr.dtype];
        if (bytes.length !== count(expr.shape) * itemBytes) fail(`constant of ${bytes.length} bytes is not ${expr.dtype} [${expr.shape}]`);
        const copy = bytes.slice();
        return { dtype: expr.dtype, shape: [...expr.shape], data: new CONSTRUCTORS[expr.dtype](copy.buffer, 0, copy.length / itemBytes) };
      }
      case 'fp16': {
        const x = await ev(expr.x);
        if (x.dtype !== 'float32') fail(`fp16 of ${x.dtype}`);
        return { dtype: 'float16', shape: x.shape, data: toFloat16(x.data as Float32Array) };
      }
      case 'int4': {
        const parts = await this.remember(`int4:${expr.block}:${JSON.stringify(expr.x)}`, async () => {
          const [w, k, n] = matrix(await ev(expr.x), 'int4');
          const q = quantizeInt4Blocks(w, k, n, expr.block);
          const blocks = Math.ceil(k / expr.block);
          return {
            weight: { dtype: 'uint8', shape: [n, blocks, expr.block / 2], data: q.packed },
            scales: { dtype: 'float32', shape: [n * blocks], data: q.scales },
            zeros: { dtype: 'uint8', shape: [q.zeroPoints.length], data: q.zeroPoints },
          } satisfies Record<string, NDArray>;
        });
        return parts[expr.part] ?? fail(`int4 has no part ${expr.part}`);
      }
      case 'int8cols':
      case 'int8rows': {
        const op = expr.op;
        const parts = await this.remember(`${op}:${JSON.stringify(expr.x)}`, async () => {
          const [w, k, n] = matrix(await ev(expr.x), op);
          const q = op === 'int8cols' ? quantizeInt8Columns(w, k, n) : quantizeInt8Rows(w, k, n);
          return {
            weight: { dtype: 'int8', shape: [k, n], data: q.values },
            scale: { dtype: 'float32', shape: [q.scales.length], data: q.scales },
          } satisfies Record<string, NDArray>;
        });
        return parts[expr.part] ?? fail(`${op} has no part ${expr.part}`);
      }
      case 'levelEmbed': {
        const [s, w1, b1, w2, b2] = await Promise.all([expr.sinusoid, expr.w1, expr.b1, expr.w2, expr.b2].map(ev));
        return levelEmbedding(s, w1, b1, w2, b2);
      }
      case 'preview': {
        const map = await this.remember('preview', () => this.ctx.preview(signal));
        return map[expr.part] ?? fail(`preview has no part ${expr.part}`);
      }
      default:
        return fail(`unknown op ${JSON.stringify((expr as { op?: unknown }).op)}`);
    }
  }

  /** The expression's bytes, checked against the tensor's dtype and shape. */
  async bytes(expr: Expr, dtype: ArrayDtype, shape: number[], signal?: AbortSignal): Promise<Uint8Array> {
    const value = await this.evaluate(expr, signal);
    if (value.dtype !== dtype || value.data.length !== count(shape)) {
      fail(`expression gives ${value.dtype} [${value.shape}], the tensor is ${dtype} [${shape}]`);
    }
    return new Uint8Array(value.data.buffer, value.data.byteOffset, value.data.byteLength);
  }
}

/** Every (source, key) an expression reads. */
export function sourcesOf(expr: Expr): { source: string; key: string }[] {
  if ('source' in expr) return [{ source: expr.source, key: expr.key }];
  const out: { source: string; key: string }[] = [];
  for (const value of Object.values(expr)) {
    if (Array.isArray(value)) for (const x of value) if (x && typeof x === 'object') out.push(...sourcesOf(x as Expr));
    if (value && typeof value === 'object' && !Array.isArray(value)) out.push(...sourcesOf(value as Expr));
  }
  return out;
}
