// The transformer's KV cache. Its tensors stay where the provider put them (GPU buffers on
// WebGPU); each step's present_* replace the past_* fed to it, and the replaced ones are freed.
// fp16 step graphs take and return the cache in float16 (half the memory and no casts); fp32
// graphs, and fp16 graphs exported before that, in float32. The graph's own input types say which.
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { BadPackageError } from './errors';
import { disposeAll, leadingRows } from './session';

export type KvDtype = 'float32' | 'float16';

export const pastKey = (block: number) => `past_key_${block}`;
export const pastValue = (block: number) => `past_value_${block}`;
export const presentKey = (block: number) => `present_key_${block}`;
export const presentValue = (block: number) => `present_value_${block}`;

export function presentNames(depth: number): string[] {
  return Array.from({ length: depth }, (_, i) => [presentKey(i), presentValue(i)]).flat();
}

/**
 * The cache's element type as the step graph declares its `past_key_0` input: float16 or
 * float32 (also when the runtime reports no types). Any other type is a broken package.
 */
export function kvCacheDtype(session: { inputType(name: string): string | undefined }, file = 'transformer graph'): KvDtype {
  const type = session.inputType(pastKey(0));
  if (type === undefined || type === 'float32' || type === 'float16') return type ?? 'float32';
  throw new BadPackageError(`its KV cache input ${pastKey(0)} is ${type}; expected float32 or float16`, file);
}

export class KvCache {
  private past = new Map<string, Tensor>();
  /** The full tensors behind the views `keepLeadingRows` left in `past`, freed with them. */
  private behindViews: Tensor[] = [];
  /** Cached positions per row (text + every scale so far). */
  length = 0;

  constructor(
    private readonly ort: Ort,
    private readonly depth: number,
    private rows: number,
    private readonly heads: number,
    private readonly headDim: number,
    readonly dtype: KvDtype = 'float32',
  ) {
    this.reset();
  }

  /** Empty past tensors [N, H, 0, hd] of the cache's type for step 0. */
  reset(): void {
    this.dispose();
    // float16 data travels as its 16-bit patterns (onnxruntime's Uint16Array convention).
    const empty = this.dtype === 'float16' ? new Uint16Array(0) : new Float32Array(0);
    for (let i = 0; i < this.depth; i++) {
      for (const name of [pastKey(i), pastValue(i)]) {
        this.past.set(name, new this.ort.Tensor(this.dtype, empty, [this.rows, this.heads, 0, this.headDim]));
      }
    }
    this.length = 0;
  }

  feeds(): Record<string, Tensor> {
    return Object.fromEntries(this.past);
  }

  /**
   * Keeps only the first `rows` rows (the conditional ones) for the steps that follow, without
   * copying: the pasts become views of the current tensors, which live until the next step's
   * presents replace them (those have `rows` rows, as the step's inputs do).
   */
  keepLeadingRows(rows: number): void {
    if (rows >= this.rows) return;
    for (const [name, tensor] of this.past) {
      this.behindViews.push(tensor);
      this.past.set(name, leadingRows(this.ort, tensor, rows));
    }
    this.rows = rows;
  }

  /** Takes a step's present_* as the new past and frees the tensors they replace. */
  advance(outputs: Record<string, Tensor>, added: number): void {
    const replaced = [...this.past.values(), ...this.behindViews.splice(0)];
    for (let i = 0; i < this.depth; i++) {
      this.past.set(pastKey(i), outputs[presentKey(i)]);
      this.past.set(pastValue(i), outputs[presentValue(i)]);
    }
    disposeAll(replaced);
    this.length += added;
  }

  dispose(): void {
    disposeAll([...this.past.values(), ...this.behindViews.splice(0)]);
    this.past.clear();
    this.length = 0;
  }
}
