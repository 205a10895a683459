// The engine's own seeded RNG. It is counter-based (Philox4x32-10, Salmon et al. 2011): every
// draw is a pure function of (seed, stream, index), so the draws of one scale do not depend on
// how many draws earlier scales made, and results never depend on the backend's own RNG.
import { checkSeed } from './samplingSettings';

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32 (Math.imul gives the low half). */
function mulhi(a: number, b: number): number {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const bLo = b & 0xffff;
  const bHi = b >>> 16;
  const loLo = aLo * bLo;
  const loHi = aLo * bHi;
  const hiLo = aHi * bLo;
  const cross = (loLo >>> 16) + (loHi & 0xffff) + (hiLo & 0xffff);
  return (aHi * bHi + (loHi >>> 16) + (hiLo >>> 16) + (cross >>> 16)) >>> 0;
}

/** Philox4x32 with 10 rounds: four uint32 counter words and two key words → four uint32 words. */
export function philox4x32(counter: ArrayLike<number>, key: ArrayLike<number>, out = new Uint32Array(4)): Uint32Array {
  let c0 = counter[0] >>> 0;
  let c1 = counter[1] >>> 0;
  let c2 = counter[2] >>> 0;
  let c3 = counter[3] >>> 0;
  let k0 = key[0] >>> 0;
  let k1 = key[1] >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

/** What a stream of draws is for; each purpose gets its own counter space. */
export const Stream = { Token: 1, Gumbel: 2, Diffusion: 3 } as const;
export type Stream = (typeof Stream)[keyof typeof Stream];

const TWO_POW_26 = 67108864;
const TWO_POW_53 = 9007199254740992;
const TWO_POW_32 = 4294967296;

export class Rng {
  private readonly key: Uint32Array;
  private readonly block = new Uint32Array(4);
  private readonly counter = new Uint32Array(4);

  constructor(seed: number) {
    checkSeed(seed);
    this.key = new Uint32Array([seed % TWO_POW_32, Math.floor(seed / TWO_POW_32)]);
  }

  /**
   * `count` uniforms in [0, 1) with 53 random bits each, for draws `[0, count)` of
   * (`stream`, `substream`). One Philox block gives two doubles.
   */
  uniforms(stream: Stream, substream: number, count: number): Float64Array {
    const out = new Float64Array(count);
    const ctr = this.counter;
    ctr[2] = substream >>> 0;
    ctr[3] = stream;
    for (let i = 0; i < count; i += 2) {
      const blockIndex = i / 2;
      ctr[0] = blockIndex % TWO_POW_32;
      ctr[1] = Math.floor(blockIndex / TWO_POW_32);
      const b = philox4x32(ctr, this.key, this.block);
      out[i] = ((b[0] >>> 5) * TWO_POW_26 + (b[1] >>> 6)) / TWO_POW_53;
      if (i + 1 < count) out[i + 1] = ((b[2] >>> 5) * TWO_POW_26 + (b[3] >>> 6)) / TWO_POW_53;
    }
    return out;
  }

  /** `count` standard normals (Box-Muller on pairs of uniforms), rounded to float32. */
  normals(stream: Stream, substream: number, count: number): Float32Array {
    const u = this.uniforms(stream, substream, count + (count % 2));
    const out = new Float32Array(count);
    for (let i = 0; i < count; i += 2) {
      // 1 - u lies in (0, 1], so the logarithm is finite.
      const radius = Math.sqrt(-2 * Math.log(1 - u[i]));
      const angle = 2 * Math.PI * u[i + 1];
      out[i] = radius * Math.cos(angle);
      if (i + 1 < count) out[i + 1] = radius * Math.sin(angle);
    }
    return out;
  }
}
