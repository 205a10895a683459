// The residual diffusion head on the last scale: iDDPM ancestral sampling over the respaced
// steps with CFG inside the graph (docs/model-package.md §4 step 8). The step arithmetic runs
// here in float32 (Math.fround after each operation), as the PyTorch reference does it.
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import type { DiffusionConstants } from './schedule';
import { floatTensor, readFloats, type GraphSession } from './session';

const f32 = Math.fround;

/** The float32 constants of one respaced step. */
interface StepConstants {
  sqrtRecip: number;
  sqrtRecipm1: number;
  coef1: number;
  coef2: number;
  logBeta: number;
  logVarianceClipped: number;
}

function stepConstants(c: DiffusionConstants, i: number): StepConstants {
  return {
    sqrtRecip: f32(c.sqrtRecipAlphasCumprod[i]),
    sqrtRecipm1: f32(c.sqrtRecipm1AlphasCumprod[i]),
    coef1: f32(c.posteriorMeanCoef1[i]),
    coef2: f32(c.posteriorMeanCoef2[i]),
    logBeta: f32(c.logBetas[i]),
    logVarianceClipped: f32(c.posteriorLogVarianceClipped[i]),
  };
}

/**
 * One iDDPM step in place on `x`: predict x0 (clipped to [−1, 1]), take the posterior mean, and
 * add noise with the learned-range variance unless this is the last step (`noise` undefined).
 */
export function denoiseStep(x: Float32Array, eps: Float32Array, v: Float32Array, k: StepConstants, noise?: Float32Array): void {
  for (let j = 0; j < x.length; j++) {
    const x0 = Math.min(1, Math.max(-1, f32(f32(k.sqrtRecip * x[j]) - f32(k.sqrtRecipm1 * eps[j]))));
    const mean = f32(f32(k.coef1 * x0) + f32(k.coef2 * x[j]));
    if (!noise) {
      x[j] = mean;
      continue;
    }
    const frac = f32(f32(v[j] + 1) / 2);
    const logVar = f32(f32(frac * k.logBeta) + f32(f32(1 - frac) * k.logVarianceClipped));
    x[j] = f32(mean + f32(f32(Math.exp(f32(0.5 * logVar))) * noise[j]));
  }
}

export interface DiffusionInputs {
  /** The last scale's transformer output [N, L, C] (stays on the GPU on WebGPU). */
  hidden: Tensor;
  /** The hard codebook vectors E[idx] of the last scale, [B, L, Cv]. */
  tokens: Float32Array;
  images: number;
  positions: number;
  channels: number;
  guidance: number;
  scale: number;
  /** steps arrays [B·L·Cv]: the start point, then the step noises for respaced indices steps−1 … 1. */
  noise: Float32Array[];
}

/**
 * Samples the residual [B·L, Cv] (already multiplied by the package's scale, 0.6 for HART).
 * `onStep(n)` is told after each of the steps.
 */
export async function sampleResidual(
  ort: Ort,
  session: GraphSession,
  constants: DiffusionConstants,
  inputs: DiffusionInputs,
  onStep?: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<Float32Array> {
  const { images, positions, channels } = inputs;
  const steps = constants.timesteps.length;
  const rows = images * positions;
  const x = Float32Array.from(inputs.noise[0]);
  const tokens = floatTensor(ort, inputs.tokens, [images, positions, channels]);
  const guidance = floatTensor(ort, new Float32Array([inputs.guidance]), [1]);
  for (let n = 0; n < steps; n++) {
    const i = steps - 1 - n;
    const outputs = await session.run(
      {
        x: floatTensor(ort, Float32Array.from(x), [rows, channels]),
        t: floatTensor(ort, new Float32Array([constants.timesteps[i]]), [1]),
        hidden: inputs.hidden,
        tokens,
        guidance,
      },
      ['eps', 'v'],
      signal,
    );
    const eps = await readFloats(outputs.eps);
    const v = await readFloats(outputs.v);
    outputs.eps.dispose();
    outputs.v.dispose();
    denoiseStep(x, eps, v, stepConstants(constants, i), i > 0 ? inputs.noise[n + 1] : undefined);
    onStep?.(n + 1, steps);
  }
  const scale = f32(inputs.scale);
  for (let j = 0; j < x.length; j++) x[j] = f32(x[j] * scale);
  return x;
}
