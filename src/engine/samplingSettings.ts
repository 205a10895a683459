// Sampling settings: the package's defaults overridden by the request, checked with messages
// that name the setting.
import { BadInputError } from './errors';
import type { SamplingSettings } from './types';

function fail(name: string, value: unknown, rule: string): never {
  throw new BadInputError(`Setting ${name} = ${JSON.stringify(value)} is invalid: it must be ${rule}.`);
}

export function resolveSettings(defaults: SamplingSettings, overrides: Partial<SamplingSettings> = {}): SamplingSettings {
  const s: SamplingSettings = { ...defaults };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined && key in defaults) (s as unknown as Record<string, unknown>)[key] = value;
  }
  if (typeof s.cfg !== 'number' || !Number.isFinite(s.cfg) || s.cfg < 0) fail('cfg', s.cfg, 'a number ≥ 0');
  if (typeof s.topK !== 'number' || !Number.isInteger(s.topK) || s.topK < 0) fail('topK', s.topK, 'a whole number ≥ 0 (0 = off)');
  if (typeof s.topP !== 'number' || !(s.topP >= 0 && s.topP <= 1)) fail('topP', s.topP, 'between 0 and 1 (0 = off)');
  if (typeof s.temperature !== 'number' || !Number.isFinite(s.temperature) || s.temperature <= 0) {
    fail('temperature', s.temperature, 'a number > 0');
  }
  if (typeof s.smooth !== 'boolean') fail('smooth', s.smooth, 'true or false');
  if (typeof s.residual !== 'boolean') fail('residual', s.residual, 'true or false');
  if (typeof s.guidedScales !== 'number' || !Number.isInteger(s.guidedScales) || s.guidedScales < 0) {
    fail('guidedScales', s.guidedScales, 'a whole number ≥ 0 (0 = every scale)');
  }
  return s;
}
