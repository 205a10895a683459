// Numbers that depend only on the scale index or the diffusion step: the CFG ramp, the Gumbel
// smoothing temperature, and the respaced iDDPM constants (all float64, as HART computes them).

/**
 * CFG weight of scale `k` of `K`: a linear ramp `cfg·k/(K−1)`; the last scale (and the diffusion
 * head) reuse the previous ratio, `cfg·(K−2)/(K−1)` (docs/hart.md §6). From scale
 * `guidedScales` on (when > 0) the weight is 0: those scales follow their own coarse layout.
 */
export function guidanceWeight(cfg: number, k: number, scales: number, guidedScales = 0): number {
  const last = scales - 1;
  if (last <= 0 || (guidedScales > 0 && k >= guidedScales)) return 0;
  return (cfg * Math.min(k, last - 1)) / last;
}

/**
 * The first scale from which on guidance is 0 on every scale and in the diffusion head (which
 * takes the last scale's weight): `scales` when the last scale is guided. From there on the
 * unconditional rows influence nothing, so the engine runs those steps on the conditional rows
 * alone. The ramp gives 0 at scale 0 as well, but a guided scale after it still needs the
 * unconditional rows' cache: only a suffix of unguided scales counts.
 */
export function firstUnguidedScale(cfg: number, scales: number, guidedScales = 0): number {
  let first = scales;
  while (first > 0 && guidanceWeight(cfg, first - 1, scales, guidedScales) === 0) first--;
  return first;
}

/** The ratio `k/(K−1)` that drives Gumbel smoothing at scale `k`. */
export function smoothingRatio(k: number, scales: number): number {
  return scales > 1 ? k / (scales - 1) : 0;
}

/** HART's Gumbel-softmax temperature for a smoothing ratio. */
export function smoothingTau(ratio: number): number {
  return Math.max(0.27 * (1 - 0.95 * ratio), 0.005);
}

export interface DiffusionConstants {
  /** Original DDPM timestep of each respaced index (ascending: 0 … trainSteps−1). */
  timesteps: number[];
  betas: Float64Array;
  alphasCumprod: Float64Array;
  posteriorMeanCoef1: Float64Array;
  posteriorMeanCoef2: Float64Array;
  posteriorLogVarianceClipped: Float64Array;
  logBetas: Float64Array;
  sqrtRecipAlphasCumprod: Float64Array;
  sqrtRecipm1AlphasCumprod: Float64Array;
}

/** iDDPM's `space_timesteps(trainSteps, [steps])`: evenly strided, rounded indices. */
export function respacedTimesteps(trainSteps: number, steps: number): number[] {
  if (steps === 1) return [0];
  const stride = (trainSteps - 1) / (steps - 1);
  const kept: number[] = [];
  let position = 0;
  for (let i = 0; i < steps; i++) {
    kept.push(Math.round(position));
    position += stride;
  }
  return kept;
}

/** Cosine-schedule betas over the training steps (Nichol & Dhariwal), β clipped at 0.999. */
export function cosineBetas(trainSteps: number): Float64Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const betas = new Float64Array(trainSteps);
  for (let i = 0; i < trainSteps; i++) {
    betas[i] = Math.min(1 - alphaBar((i + 1) / trainSteps) / alphaBar(i / trainSteps), 0.999);
  }
  return betas;
}

/** The constants of the respaced sampler, in float64 (docs/hart.md §10.3). */
export function diffusionConstants(steps: number, trainSteps: number, schedule = 'cosine'): DiffusionConstants {
  if (schedule !== 'cosine') throw new Error(`Unknown diffusion schedule "${schedule}" (only "cosine" is supported).`);
  const timesteps = respacedTimesteps(trainSteps, steps);
  const kept = new Set(timesteps);
  const base = cosineBetas(trainSteps);

  // Respacing keeps ᾱ at the kept steps and derives new betas from consecutive ratios.
  const betas = new Float64Array(steps);
  let cumprod = 1;
  let last = 1;
  let j = 0;
  for (let t = 0; t < trainSteps; t++) {
    cumprod *= 1 - base[t];
    if (kept.has(t)) {
      betas[j++] = 1 - cumprod / last;
      last = cumprod;
    }
  }

  const alphasCumprod = new Float64Array(steps);
  const posteriorVariance = new Float64Array(steps);
  const posteriorMeanCoef1 = new Float64Array(steps);
  const posteriorMeanCoef2 = new Float64Array(steps);
  const logBetas = new Float64Array(steps);
  const sqrtRecipAlphasCumprod = new Float64Array(steps);
  const sqrtRecipm1AlphasCumprod = new Float64Array(steps);
  let acc = 1;
  for (let i = 0; i < steps; i++) {
    const previous = acc;
    acc *= 1 - betas[i];
    alphasCumprod[i] = acc;
    posteriorVariance[i] = (betas[i] * (1 - previous)) / (1 - acc);
    posteriorMeanCoef1[i] = (betas[i] * Math.sqrt(previous)) / (1 - acc);
    posteriorMeanCoef2[i] = ((1 - previous) * Math.sqrt(1 - betas[i])) / (1 - acc);
    logBetas[i] = Math.log(betas[i]);
    sqrtRecipAlphasCumprod[i] = Math.sqrt(1 / acc);
    sqrtRecipm1AlphasCumprod[i] = Math.sqrt(1 / acc - 1);
  }
  // The posterior variance is 0 at the first step; iDDPM clips its log to the next value.
  const posteriorLogVarianceClipped = new Float64Array(steps);
  for (let i = 0; i < steps; i++) {
    posteriorLogVarianceClipped[i] = Math.log(i === 0 && steps > 1 ? posteriorVariance[1] : posteriorVariance[i]);
  }

  return {
    timesteps,
    betas,
    alphasCumprod,
    posteriorMeanCoef1,
    posteriorMeanCoef2,
    posteriorLogVarianceClipped,
    logBetas,
    sqrtRecipAlphasCumprod,
    sqrtRecipm1AlphasCumprod,
  };
}
