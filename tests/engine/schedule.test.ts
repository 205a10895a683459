import { describe, expect, it } from 'vitest';
import { diffusionConstants, firstUnguidedScale, guidanceWeight, respacedTimesteps, smoothingRatio, smoothingTau } from '../../src/engine/schedule';

// docs/hart.md §10.3, respaced index order 0..7 (original t = 0, 143, …, 999).
const TABLE = {
  betas: ['4.12842e-5', '0.0548782', '0.1487457', '0.2495457', '0.3660719', '0.5175658', '0.7354388', '0.99999995'],
  alphasCumprod: ['0.99995872', '0.94508278', '0.80450574', '0.6037448', '0.38273078', '0.18464242', '0.04884921', '2.4288e-9'],
  posteriorMeanCoef1: ['1.0', '0.99926887', '0.73968269', '0.56485851', '0.4608064', '0.39270294', '0.33224843', '0.22101857'],
  posteriorMeanCoef2: ['0.0', '0.00073084', '0.25918162', '0.42738685', '0.51111703', '0.52583024', '0.44092202', '0.00021209'],
  posteriorLogVarianceClipped: ['-10.09574', '-10.09574', '-3.17522', '-2.09464', '-1.44817', '-0.93694', '-0.46133', '-0.05008'],
  logBetas: ['-10.09503', '-2.90264', '-1.90552', '-1.38811', '-1.00493', '-0.65862', '-0.30729', '-4.97e-8'],
  sqrtRecipAlphasCumprod: ['1.0000206', '1.028644', '1.1148987', '1.2869845', '1.6164166', '2.3272029', '4.5245065', '20291.17'],
  sqrtRecipm1AlphasCumprod: ['0.0064254', '0.2410568', '0.4929495', '0.8101413', '1.2699617', '2.101398', '4.4126136', '20291.17'],
};

describe('schedule', () => {
  it('keeps the timesteps of space_timesteps(1000, "8")', () => {
    expect(respacedTimesteps(1000, 8)).toEqual([0, 143, 285, 428, 571, 714, 856, 999]);
    expect(diffusionConstants(8, 1000).timesteps).toEqual([0, 143, 285, 428, 571, 714, 856, 999]);
  });

  it("equals docs/hart.md §10.3's table of respaced constants", () => {
    const c = diffusionConstants(8, 1000);
    for (const [name, expected] of Object.entries(TABLE)) {
      const actual = c[name as keyof typeof TABLE];
      expected.forEach((text, i) => {
        const e = Number(text);
        // One unit of the last digit the table prints (4-8 significant digits, last one rounded).
        const [mantissa, exponent = '0'] = text.split('e');
        const decimals = (mantissa.split('.')[1] ?? '').length - Number(exponent);
        const tolerance = 10 ** -decimals;
        expect(Math.abs(actual[i] - e), `${name}[${i}] = ${actual[i]}, table ${e}`).toBeLessThanOrEqual(tolerance);
      });
    }
  });

  it('ramps the CFG weight linearly and reuses the previous ratio on the last scale', () => {
    const K = 14;
    expect(guidanceWeight(4.5, 0, K)).toBe(0);
    expect(guidanceWeight(4.5, 1, K)).toBeCloseTo(0.346, 3);
    expect(guidanceWeight(4.5, 12, K)).toBeCloseTo(4.1538, 4);
    expect(guidanceWeight(4.5, 13, K)).toBe(guidanceWeight(4.5, 12, K));
    expect(guidanceWeight(4, 3, 10)).toBeCloseTo((4 * 3) / 9, 12);
    expect(guidanceWeight(4, 9, 10)).toBeCloseTo((4 * 8) / 9, 12);
  });

  it('guides only the first guidedScales scales (0: all of them)', () => {
    for (let k = 0; k < 10; k++) expect(guidanceWeight(4, k, 10, 0)).toBe(guidanceWeight(4, k, 10));
    expect(guidanceWeight(4, 5, 10, 6)).toBeCloseTo((4 * 5) / 9, 12);
    expect(guidanceWeight(4, 6, 10, 6)).toBe(0);
    expect(guidanceWeight(4, 9, 10, 6)).toBe(0);   // the last scale and the residual head too
    expect(guidanceWeight(4, 9, 10, 10)).toBe(guidanceWeight(4, 9, 10));
  });

  it('runs conditional rows alone only on a suffix of unguided scales', () => {
    expect(firstUnguidedScale(4, 10, 6)).toBe(6);
    expect(firstUnguidedScale(4, 10, 0)).toBe(10);   // the last scale is guided: never
    expect(firstUnguidedScale(4, 10, 10)).toBe(10);
    expect(firstUnguidedScale(0, 10, 0)).toBe(0);    // cfg 0: no scale is guided
    expect(firstUnguidedScale(4, 10, 1)).toBe(0);    // scale 0's ramp weight is 0 too
    // Scale 0 is unguided (its ramp weight is 0) but the scales after it are: it keeps both rows.
    expect(guidanceWeight(4, 0, 10, 2)).toBe(0);
    expect(firstUnguidedScale(4, 10, 2)).toBe(2);
    for (const [cfg, G] of [[4, 6], [4, 0], [0, 0], [4, 1], [4, 2], [2, 9]]) {
      const first = firstUnguidedScale(cfg, 10, G);
      for (let k = first; k < 10; k++) expect(guidanceWeight(cfg, k, 10, G)).toBe(0);
    }
  });

  it("follows docs/hart.md's Gumbel temperatures", () => {
    expect(smoothingTau(smoothingRatio(0, 14))).toBeCloseTo(0.27, 6);
    expect(smoothingTau(smoothingRatio(1, 14))).toBeCloseTo(0.25, 2);
    expect(smoothingTau(smoothingRatio(12, 14))).toBeCloseTo(0.033, 3);
    expect(smoothingTau(1)).toBeCloseTo(0.0135, 6);
    expect(smoothingTau(5)).toBe(0.005);
  });
});
