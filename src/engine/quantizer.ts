// The multi-scale quantizer's side of the loop: adding a scale's token vectors to f_hat and
// building the next scale's input (the scaleUpdate graph), and the last scale's plain addition.
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import type { ModelSpec } from './manifest';
import { floatTensor, readFloats, type GraphSession } from './session';

/** The constant inputs of scaleUpdate for each scale k < K−1, cut from tables.bin once. */
export interface ScaleTables {
  upsample: Float32Array[];
  downsample: Float32Array[];
  phiWeight: Float32Array[];
  phiBias: Float32Array[];
  levels: Float32Array[];
}

export function scaleTables(model: ModelSpec, tables: Map<string, Float32Array>): ScaleTables {
  const { patchNums, latentChannels: cv, width: c } = model;
  const get = (name: string) => tables.get(name)!;
  const phiW = get('phiWeight');
  const phiB = get('phiBias');
  const levels = get('levels');
  const convSize = cv * cv * 9;
  return {
    upsample: patchNums.map((_, k) => get(`upsample.${k}`)),
    downsample: patchNums.map((_, k) => get(`downsample.${k}`)),
    phiWeight: model.phiIndex.map((j) => phiW.subarray(j * convSize, (j + 1) * convSize)),
    phiBias: model.phiIndex.map((j) => phiB.subarray(j * cv, (j + 1) * cv)),
    levels: patchNums.map((_, k) => levels.subarray(k * c, (k + 1) * c)),
  };
}

/** Outputs of scaleUpdate that only the transformer reads. */
export const SCALE_UPDATE_GPU_OUTPUTS = ['x_next'];

/**
 * Scale k < K−1: `f_hat + φ(Up(tokens))` and the next input `word_embed(Down(f_hat)) + level`
 * for both CFG halves. `vectors` is [B, pn_k², Cv], token-major.
 */
export async function updateScale(
  ort: Ort,
  session: GraphSession,
  model: ModelSpec,
  tables: ScaleTables,
  k: number,
  fHat: Float32Array,
  vectors: Float32Array,
  images: number,
  signal?: AbortSignal,
): Promise<{ fHat: Float32Array; xNext: Tensor }> {
  const { patchNums, latentChannels: cv, width: c } = model;
  const h = patchNums[patchNums.length - 1];
  const pn = patchNums[k];
  const next = patchNums[k + 1];
  const outputs = await session.run(
    {
      f_hat: floatTensor(ort, fHat, [images, cv, h, h]),
      tokens: floatTensor(ort, vectors, [images, pn * pn, cv]),
      upsample: floatTensor(ort, tables.upsample[k], [h, pn]),
      phi_weight: floatTensor(ort, tables.phiWeight[k], [cv, cv, 3, 3]),
      phi_bias: floatTensor(ort, tables.phiBias[k], [cv]),
      downsample: floatTensor(ort, tables.downsample[k + 1], [next, h]),
      level: floatTensor(ort, tables.levels[k + 1], [c]),
    },
    ['f_hat_next', 'x_next'],
    signal,
  );
  const next_fHat = await readFloats(outputs.f_hat_next);
  outputs.f_hat_next.dispose();
  return { fHat: next_fHat, xNext: outputs.x_next };
}

/**
 * The last scale: `f_hat + vectors` without φ or resampling. `vectors` is [B, h², Cv]
 * (token-major) and f_hat [B, Cv, h, h] (channel-major); float32 addition as PyTorch does.
 */
export function addLastScale(fHat: Float32Array, vectors: Float32Array, images: number, channels: number, side: number): Float32Array {
  const out = new Float32Array(fHat.length);
  const area = side * side;
  for (let b = 0; b < images; b++) {
    for (let p = 0; p < area; p++) {
      for (let ch = 0; ch < channels; ch++) {
        const at = (b * channels + ch) * area + p;
        out[at] = fHat[at] + vectors[(b * area + p) * channels + ch];
      }
    }
  }
  return out;
}
