// The rules of a request's sampling settings and seed: the range of every setting and the seed
// limit, owned here. The UI and the CLI read them; the engine checks a request against them where
// it enters (pipeline.ts), with messages that name the setting and its range.
import { BadInputError } from './errors';
import type { SamplingSettings, TopK, TopKSchedule, VaryRequest } from './types';

/** HART's own sampling defaults, for when no package has given its own yet. */
export const HART_DEFAULTS: Readonly<SamplingSettings> = {
  cfg: 4.5,
  topK: 0,
  topP: 0,
  temperature: 1,
  smooth: false,
  residual: true,
  guidedScales: 0,
};

export interface SettingRange {
  min: number;
  /** No upper bound when absent. */
  max?: number;
  integer: boolean;
  /** What a value of 0 means, when 0 turns the setting off (e.g. 'off', 'every scale'). */
  zero?: string;
}

export type NumericSetting = 'cfg' | 'topK' | 'topP' | 'temperature' | 'guidedScales';

/**
 * The range of every numeric setting. cfg: HART's defaults are 4–5; past 10 the guided logits
 * only sharpen into saturated, collapsed images. temperature: 0.05 is near-greedy, and past 2 the
 * token distribution is close to uniform noise. topK and guidedScales have no upper bound: a
 * top-k over the vocabulary keeps every token, guided scales past the last scale guide all.
 */
export const SETTING_RANGES: Readonly<Record<NumericSetting, SettingRange>> = {
  cfg: { min: 0, max: 10, integer: false },
  topK: { min: 0, integer: true, zero: 'off' },
  topP: { min: 0, max: 1, integer: false, zero: 'off' },
  temperature: { min: 0.05, max: 2, integer: false },
  guidedScales: { min: 0, integer: true, zero: 'every scale' },
};

/**
 * The largest seed: 2^53 − 1, every whole number a JS number holds exactly. The RNG keys Philox
 * with the seed's two 32-bit words (rng.ts), so each of these is its own stream; a seed the CLI
 * writes into a PNG can be typed into the page and gives the same image. 2^31 − 1 would turn
 * away seeds that work and are already in people's files.
 */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

/** A range in words: "a number from 0 to 10", "a whole number ≥ 0 (0 = off)". */
export function describeRange(range: SettingRange): string {
  const kind = range.integer ? 'a whole number' : 'a number';
  const bounds = range.max === undefined ? ` ≥ ${range.min}` : ` from ${range.min} to ${range.max}`;
  return `${kind}${bounds}${range.zero ? ` (0 = ${range.zero})` : ''}`;
}

function inRange(range: SettingRange, value: unknown): boolean {
  return (
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (!range.integer || Number.isInteger(value)) &&
    value >= range.min &&
    (range.max === undefined || value <= range.max)
  );
}

/** True when `value` is a top-k schedule: as many values as starts, each value a valid top-k, the
 * 0-based starts whole numbers that begin at 0 and increase. */
export function isTopKSchedule(value: unknown): value is TopKSchedule {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const { values, from, ...rest } = value as Record<string, unknown>;
  if (Object.keys(rest).length > 0 || !Array.isArray(values) || !Array.isArray(from)) return false;
  if (values.length === 0 || values.length !== from.length || from[0] !== 0) return false;
  const starts = { min: 0, integer: true };
  return (
    values.every((v) => inRange(SETTING_RANGES.topK, v)) &&
    from.every((s, i) => inRange(starts, s) && (i === 0 || (s as number) > (from[i - 1] as number)))
  );
}

const TOP_K_SCHEDULE_RULE =
  'a schedule { "values": [k, …], "from": [0, scale, …] }: one 0-based first scale per k, starting at 0 and increasing, each k a whole number ≥ 0';

/** Why `value` is not a valid `key`, as the rule it breaks; undefined when it is valid. */
export function settingProblem(key: keyof SamplingSettings, value: unknown): string | undefined {
  if (key === 'smooth' || key === 'residual') return typeof value === 'boolean' ? undefined : 'true or false';
  if (key === 'topK' && typeof value === 'object' && value !== null) return isTopKSchedule(value) ? undefined : TOP_K_SCHEDULE_RULE;
  const range = SETTING_RANGES[key];
  return inRange(range, value) ? undefined : describeRange(range);
}

/** The top-k of the 0-based scale `scale`. */
export function topKAt(topK: TopK, scale: number): number {
  if (typeof topK === 'number') return topK;
  let k = topK.values[0];
  for (let i = 0; i < topK.from.length && topK.from[i] <= scale; i++) k = topK.values[i];
  return k;
}

function isSettingKey(key: string): key is keyof SamplingSettings {
  return key === 'smooth' || key === 'residual' || key in SETTING_RANGES;
}

/** Throws a BadInputError naming the first setting out of its range. */
export function checkSettings(settings: Partial<SamplingSettings>): void {
  for (const [key, value] of Object.entries(settings)) {
    if (value === undefined || !isSettingKey(key)) continue;
    const rule = settingProblem(key, value);
    if (rule) throw new BadInputError(`Setting ${key} = ${JSON.stringify(value)} is invalid: it must be ${rule}.`);
  }
}

export function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new BadInputError(`Seed ${seed} is not a whole number between 0 and ${MAX_SEED}.`);
  }
}

/** The seed `offset` places after `seed`, wrapping inside 0…MAX_SEED (exact near the limit). */
export function seedAfter(seed: number, offset: number): number {
  return offset <= MAX_SEED - seed ? seed + offset : offset - (MAX_SEED - seed) - 1;
}

/** The package's defaults overridden by the request, checked. */
export function resolveSettings(defaults: SamplingSettings, overrides: Partial<SamplingSettings> = {}): SamplingSettings {
  const s: SamplingSettings = { ...defaults };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined && key in defaults) (s as unknown as Record<string, unknown>)[key] = value;
  }
  checkSettings(s);
  return s;
}

/**
 * The range of a 1-based first scale (a detail prompt's `detailFrom`, a vary's `fromScale`) on a
 * model of `scales` scales: scales count from 1, as the status line's "Scale k of K".
 */
export function scaleFromRange(scales: number): SettingRange {
  return { min: 1, max: scales, integer: true };
}

/** Throws a BadInputError unless `value` is a first scale on a model of `scales` scales. */
export function checkScaleFrom(name: string, value: unknown, scales: number): void {
  if (!inRange(scaleFromRange(scales), value)) {
    throw new BadInputError(`${name} = ${JSON.stringify(value)} is invalid: it must be ${describeRange(scaleFromRange(scales))} (scales count from 1).`);
  }
}

/**
 * The range of image to image's `fromScale`: one more than a first scale, since K + 1 keeps
 * every scale of the image (its reconstruction by the tokenizer).
 */
export function imageFromScaleRange(scales: number): SettingRange {
  return { min: 1, max: scales + 1, integer: true };
}

/** Throws a BadInputError unless `value` is image to image's first sampled scale on `scales` scales. */
export function checkImageFromScale(name: string, value: unknown, scales: number): void {
  const range = imageFromScaleRange(scales);
  if (!inRange(range, value)) {
    throw new BadInputError(`${name} = ${JSON.stringify(value)} is invalid: it must be ${describeRange(range)} (scales count from 1; ${scales + 1} keeps every scale of the image).`);
  }
}

/**
 * A vary's kept token maps, checked against the model: scale k (0-based) of `sides` holds
 * sides[k]² indices below `vocab`, drawn with a valid seed.
 */
export function checkVary(vary: VaryRequest, sides: readonly number[], vocab: number): void {
  checkScaleFrom('vary.fromScale', vary?.fromScale, sides.length);
  const kept = vary.fromScale - 1;
  const maps = vary.tokens?.maps;
  const seeds = vary.tokens?.seeds;
  if (!Array.isArray(maps) || !Array.isArray(seeds) || maps.length < kept || seeds.length < kept) {
    throw new BadInputError(`vary.tokens must hold the token maps and seeds of at least the ${kept} kept scales.`);
  }
  for (let k = 0; k < kept; k++) {
    const map = maps[k];
    if (!(map instanceof Int32Array) || map.length !== sides[k] ** 2 || map.some((i) => i < 0 || i >= vocab)) {
      throw new BadInputError(`vary.tokens.maps[${k}] must be an Int32Array of ${sides[k] ** 2} indices from 0 to ${vocab - 1}: the tokens are not this model's.`);
    }
    if (!Number.isSafeInteger(seeds[k]) || seeds[k] < 0 || seeds[k] > MAX_SEED) throw new BadInputError(`vary.tokens.seeds[${k}] = ${seeds[k]} is not a seed.`);
  }
}
