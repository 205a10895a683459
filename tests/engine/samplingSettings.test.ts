import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/engine/manifest';
import { checkSeed, checkSettings, MAX_SEED, resolveSettings, seedAfter, SETTING_RANGES } from '../../src/engine/samplingSettings';
import type { SamplingSettings } from '../../src/engine/types';
import { syntheticPackage } from './manifestFixture';

const defaults: SamplingSettings = { cfg: 4, topK: 0, topP: 0, temperature: 1, smooth: false, residual: true, guidedScales: 0 };

describe('sampling settings', () => {
  it('accepts every range end and turns away what lies outside, naming the setting and its range', () => {
    for (const [key, range] of Object.entries(SETTING_RANGES)) {
      expect(() => checkSettings({ [key]: range.min })).not.toThrow();
      if (range.max !== undefined) expect(() => checkSettings({ [key]: range.max })).not.toThrow();
      expect(() => checkSettings({ [key]: range.min - 1 })).toThrow(expect.objectContaining({ code: 'bad-input', message: expect.stringContaining(`Setting ${key} = `) }));
    }
    expect(() => checkSettings({ cfg: 10.5 })).toThrow('Setting cfg = 10.5 is invalid: it must be a number from 0 to 10.');
    expect(() => checkSettings({ temperature: 0 })).toThrow('Setting temperature = 0 is invalid: it must be a number from 0.05 to 2.');
    expect(() => checkSettings({ topK: 1.5 })).toThrow('Setting topK = 1.5 is invalid: it must be a whole number ≥ 0 (0 = off).');
    expect(() => checkSettings({ smooth: 'yes' as unknown as boolean })).toThrow('Setting smooth = "yes" is invalid: it must be true or false.');
    expect(resolveSettings(defaults, { cfg: 2, topK: undefined })).toEqual({ ...defaults, cfg: 2 });
  });

  it('takes seeds from 0 to 2^53 − 1 and wraps multi-image seeds exactly', () => {
    expect(MAX_SEED).toBe(2 ** 53 - 1);
    expect(() => checkSeed(MAX_SEED)).not.toThrow();
    expect(() => checkSeed(-1)).toThrow(/Seed -1 is not a whole number between 0 and 9007199254740991/);
    expect(() => checkSeed(1.5)).toThrow(expect.objectContaining({ code: 'bad-input' }));
    expect(seedAfter(7, 2)).toBe(9);
    expect(seedAfter(MAX_SEED, 0)).toBe(MAX_SEED);
    expect(seedAfter(MAX_SEED, 1)).toBe(0);
    expect(seedAfter(MAX_SEED - 1, 3)).toBe(1);
  });

  it('holds a package\'s defaults to the same ranges', () => {
    const { manifest } = syntheticPackage();
    manifest.sampling.cfg = 12;
    expect(() => parseManifest(manifest)).toThrow(/sampling\.cfg is 12; it must be a number from 0 to 10/);
  });
});
