// The transformer's KV cache. Its tensors stay where the provider put them (GPU buffers on
// WebGPU); each step's present_* replace the past_* fed to it, and the replaced ones are freed.
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { disposeAll } from './session';

export const pastKey = (block: number) => `past_key_${block}`;
export const pastValue = (block: number) => `past_value_${block}`;
export const presentKey = (block: number) => `present_key_${block}`;
export const presentValue = (block: number) => `present_value_${block}`;

export function presentNames(depth: number): string[] {
  return Array.from({ length: depth }, (_, i) => [presentKey(i), presentValue(i)]).flat();
}

export class KvCache {
  private past = new Map<string, Tensor>();
  /** Cached positions per row (text + every scale so far). */
  length = 0;

  constructor(
    private readonly ort: Ort,
    private readonly depth: number,
    private readonly rows: number,
    private readonly heads: number,
    private readonly headDim: number,
  ) {
    this.reset();
  }

  /** Empty past tensors [N, H, 0, hd] for step 0. */
  reset(): void {
    this.dispose();
    const empty = new Float32Array(0);
    for (let i = 0; i < this.depth; i++) {
      for (const name of [pastKey(i), pastValue(i)]) {
        this.past.set(name, new this.ort.Tensor('float32', empty, [this.rows, this.heads, 0, this.headDim]));
      }
    }
    this.length = 0;
  }

  feeds(): Record<string, Tensor> {
    return Object.fromEntries(this.past);
  }

  /** Takes a step's present_* as the new past and frees the tensors they replace. */
  advance(outputs: Record<string, Tensor>, added: number): void {
    const replaced = [...this.past.values()];
    for (let i = 0; i < this.depth; i++) {
      this.past.set(pastKey(i), outputs[presentKey(i)]);
      this.past.set(pastValue(i), outputs[presentValue(i)]);
    }
    disposeAll(replaced);
    this.length += added;
  }

  dispose(): void {
    disposeAll(this.past.values());
    this.past.clear();
    this.length = 0;
  }
}
