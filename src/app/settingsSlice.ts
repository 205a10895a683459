// Sampling settings, seed and image count. Values are clamped here so the engine never sees a
// setting a person could not have meant (a negative top-k, a temperature of zero).
import type { SamplingSettings } from '../engine/types';
import type { AppDeps, SettingsSlice, Slice } from './storeTypes';

/** HART's defaults; replaced by the model's own defaults once it is loaded. */
export const FALLBACK_SETTINGS: SamplingSettings = {
  cfg: 4.5,
  topK: 0,
  topP: 0,
  temperature: 1,
  smooth: false,
  residual: true,
  guidedScales: 0,
};

export const MAX_IMAGES = 8;
export const MAX_SEED = 2 ** 31 - 1;

function finiteOr(value: number, fallback: number): number {
  return Number.isFinite(value) ? value : fallback;
}

export function clampSetting<K extends keyof SamplingSettings>(key: K, value: SamplingSettings[K]): SamplingSettings[K] {
  if (typeof value === 'boolean') return value;
  const v = value as number;
  switch (key) {
    case 'cfg':
      return Math.min(20, Math.max(0, finiteOr(v, FALLBACK_SETTINGS.cfg))) as SamplingSettings[K];
    case 'topK':
    case 'guidedScales':
      return Math.max(0, Math.round(finiteOr(v, 0))) as SamplingSettings[K];
    case 'topP':
      return Math.min(1, Math.max(0, finiteOr(v, 0))) as SamplingSettings[K];
    case 'temperature':
      return Math.min(5, Math.max(0.05, finiteOr(v, 1))) as SamplingSettings[K];
    default:
      return value;
  }
}

export function clampSeed(seed: number): number {
  return Math.min(MAX_SEED, Math.max(0, Math.floor(finiteOr(seed, 0))));
}

export function createSettingsSlice(deps: AppDeps): Slice<SettingsSlice> {
  return (set, get) => ({
    settings: { ...FALLBACK_SETTINGS },
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
      set({ settings: { ...(get().modelInfo?.defaults ?? FALLBACK_SETTINGS) } });
    },
  });
}
