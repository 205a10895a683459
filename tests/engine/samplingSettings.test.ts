import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/engine/manifest';
import { checkScaleFrom, checkSeed, checkSettings, checkVary, describeRange, MAX_SEED, resolveSettings, scaleFromRange, seedAfter, SETTING_RANGES, topKAt } from '../../src/engine/samplingSettings';
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

  it('takes a top-k schedule: the k of each 0-based scale, or a message naming what is wrong', () => {
    const hart = { values: [600, 300], from: [0, 7] };
    expect(() => checkSettings({ topK: hart })).not.toThrow();
    expect([0, 6, 7, 13].map((k) => topKAt(hart, k))).toEqual([600, 600, 300, 300]);
    expect([0, 1, 2, 5].map((k) => topKAt({ values: [0, 8, 2], from: [0, 2, 4] }, k))).toEqual([0, 0, 8, 2]);
    expect(topKAt(12, 9)).toBe(12);
    for (const bad of [
      { values: [600, 300], from: [1, 7] },
      { values: [600, 300], from: [0, 0] },
      { values: [600, 300], from: [0, 9, 7] },
      { values: [600], from: [0, 7] },
      { values: [], from: [] },
      { values: [600, -1], from: [0, 7] },
      { values: [600, 300.5], from: [0, 7] },
      { values: [600, 300], from: [0, 6.5] },
      { values: [600, 300], from: [0, 7], extra: 1 },
      [600, 300],
    ]) {
      expect(() => checkSettings({ topK: bad as never }), JSON.stringify(bad)).toThrow(/Setting topK = .* is invalid: it must be a schedule \{ "values"/);
    }
    // A request's number replaces a package's schedule, and a schedule a number.
    expect(resolveSettings({ ...defaults, topK: hart }, { topK: 40 }).topK).toBe(40);
    expect(resolveSettings(defaults, { topK: hart }).topK).toEqual(hart);
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
    manifest.sampling.cfg = 4;
    manifest.sampling.topK = { values: [600, 300], from: [2, 7] };
    expect(() => parseManifest(manifest)).toThrow(/sampling\.topK is \{"values":\[600,300\],"from":\[2,7\]\}; it must be a schedule/);
  });

  it('a first scale is a whole number from 1 to the model’s scales; kept tokens must fit the model', () => {
    expect(describeRange(scaleFromRange(14))).toBe('a whole number from 1 to 14');
    expect(() => checkScaleFrom('detailFrom', 14, 14)).not.toThrow();
    for (const bad of [0, 15, 2.5, '3', NaN]) {
      expect(() => checkScaleFrom('detailFrom', bad, 14)).toThrow(expect.objectContaining({ code: 'bad-input', message: expect.stringMatching(/^detailFrom = .* is invalid: it must be a whole number from 1 to 14/) }));
    }
    const tokens = { maps: [new Int32Array([3]), new Int32Array([0, 1, 2, 3])], seeds: [5, 5] };
    expect(() => checkVary({ fromScale: 3, tokens }, [1, 2, 4], 4)).not.toThrow();
    expect(() => checkVary({ fromScale: 2, tokens: { maps: tokens.maps, seeds: [-1] } }, [1, 2, 4], 4)).toThrow(/seeds\[0\]/);
    expect(() => checkVary({ fromScale: 3, tokens: { maps: [tokens.maps[0], new Int32Array(3)], seeds: [5, 5] } }, [1, 2, 4], 4)).toThrow(/maps\[1\]/);
    expect(() => checkVary({ fromScale: 2, tokens }, [1, 2, 4], 3)).toThrow(/maps\[0\] must be an Int32Array of 1 indices from 0 to 2/);
    expect(() => checkVary({ fromScale: 4, tokens }, [1, 2, 4], 4)).toThrow(/vary.fromScale = 4/);
  });
});
