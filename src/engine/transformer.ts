// One transformer step with the KV cache, and the guided head on its output.
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { KvCache, presentNames } from './kvCache';
import type { RopeTables } from './rope';
import { floatTensor, readFloats, type GraphSession } from './session';

/** Outputs of the transformer that never leave the GPU on WebGPU. */
export function transformerGpuOutputs(depth: number): string[] {
  return ['hidden', ...presentNames(depth)];
}

/**
 * Runs one step on `x` [N, L, C] and returns `hidden` [N, L, C]. `keepCache` is false on the
 * last scale: its keys and values are never read again, so they are not fetched.
 */
export async function transformerStep(
  ort: Ort,
  session: GraphSession,
  cache: KvCache,
  x: Tensor,
  rope: RopeTables,
  keepCache: boolean,
  signal?: AbortSignal,
): Promise<Tensor> {
  const dims = [rope.rows, rope.length, rope.headDim];
  const feeds = {
    x,
    rope_cos: floatTensor(ort, rope.cos, dims),
    rope_sin: floatTensor(ort, rope.sin, dims),
    ...cache.feeds(),
  };
  const wanted = keepCache ? session.outputNames.slice() : ['hidden'];
  const outputs = await session.run(feeds, wanted, signal);
  if (keepCache) cache.advance(outputs, rope.length);
  return outputs.hidden;
}

/**
 * The guided logits [B, L, V] of a step: `(1 + t)·cond − t·uncond` computed in the head graph.
 * Returned on the CPU, since sampling reads them.
 */
export async function guidedLogits(
  ort: Ort,
  session: GraphSession,
  hidden: Tensor,
  headCond: Tensor,
  guidance: number,
  signal?: AbortSignal,
): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const outputs = await session.run(
    { hidden, head_cond: headCond, guidance: floatTensor(ort, new Float32Array([guidance]), [1]) },
    ['logits'],
    signal,
  );
  const data = await readFloats(outputs.logits);
  const dims = outputs.logits.dims;
  outputs.logits.dispose();
  return { data, dims };
}
