// Sampling settings, seed and image count. Inputs are held inside the engine's ranges (a typed
// -3 becomes 0), so the page never sends a setting the engine would turn away; the ranges and the
// seed limit are the engine's.
import { HART_DEFAULTS, imageFromScaleRange, MAX_SEED, scaleFromRange, SETTING_RANGES, type SamplingSettings, type TopK } from '../engine/index';
import type { AppDeps, SettingsSlice, Slice } from './storeTypes';


export const MAX_IMAGES = 8;
/** The engine's ranges, for the inputs that show them. */
export { imageFromScaleRange, MAX_SEED, scaleFromRange, SETTING_RANGES };

function finiteOr(value: number, fallback: number): number {
  return Number.isFinite(value) ? value : fallback;
}

export function clampSetting<K extends keyof SamplingSettings>(key: K, value: SamplingSettings[K]): SamplingSettings[K] {
  if (typeof value === 'boolean' || key === 'smooth' || key === 'residual') return value;
  // A top-k schedule comes from a package or a gallery entry, already checked; it is kept whole.
  if (typeof value === 'object') return value;
  const range = SETTING_RANGES[key as Exclude<keyof SamplingSettings, 'smooth' | 'residual'>];
  const v = finiteOr(value as number, HART_DEFAULTS[key] as number);
  const whole = range.integer ? Math.round(v) : v;
  return Math.min(range.max ?? Infinity, Math.max(range.min, whole)) as SamplingSettings[K];
}

/**
 * A top-k in words, its scales counted from 1 as the page's timeline counts them ("Scale k of K"):
 * 600 on scales 0–6 and 300 from 0-based scale 7 on reads "600, 300 from scale 8".
 */
export function describeTopK(topK: TopK): string {
  if (typeof topK === 'number') return topK === 0 ? 'off' : String(topK);
  return topK.values.map((k, i) => `${k === 0 ? 'off' : k}${i === 0 ? '' : ` from scale ${topK.from[i] + 1}`}`).join(', ');
}

/** A first scale (1-based) held inside the engine's range for a model of `scales` scales. */
export function clampScaleFrom(scale: number, scales: number): number {
  const range = scaleFromRange(scales);
  return Math.min(range.max!, Math.max(range.min, Math.round(finiteOr(scale, range.min))));
}

/** Image to image's first sampled scale held inside the engine's range (1 … K + 1). */
export function clampImageFromScale(scale: number, scales: number): number {
  const range = imageFromScaleRange(scales);
  return Math.min(range.max!, Math.max(range.min, Math.round(finiteOr(scale, range.min))));
}

export function clampSeed(seed: number): number {
  return Math.min(MAX_SEED, Math.max(0, Math.floor(finiteOr(seed, 0))));
}

export function createSettingsSlice(deps: AppDeps): Slice<SettingsSlice> {
  return (set, get) => ({
    settings: { ...HART_DEFAULTS },
    seed: clampSeed(deps.randomSeed()),
    randomSeed: true,
    count: 1,
    setSetting(key, value) {
      set({ settings: { ...get().settings, [key]: clampSetting(key, value) } });
    },
    setSeed(seed) {
      set({ seed: clampSeed(seed), randomSeed: false });
    },
    setRandomSeed(on) {
      set({ randomSeed: on });
    },
    reuseSeed() {
      const last = get().lastSeed;
      if (last !== undefined) set({ seed: last, randomSeed: false });
    },
    setCount(count) {
      set({ count: Math.min(MAX_IMAGES, Math.max(1, Math.round(finiteOr(count, 1)))) });
    },
    resetSettings() {
      set({ settings: { ...(get().modelInfo?.defaults ?? HART_DEFAULTS) } });
    },
  });
}
