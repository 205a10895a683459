// 16-bit floats as numpy and torch store them: float16 (IEEE binary16) and bfloat16 to float32
// exactly, and float32 to float16 as numpy's `astype(np.float16)` rounds (to nearest, ties to
// even, subnormals kept, overflow to infinity), so an imported fp16 graph is byte-identical to
// the Python converter's.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 value of float16 bits. */
export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** float16 bits of a float32 value, rounded to nearest even as numpy does (NaN stays NaN). */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) {
    if (mantissa === 0) return sign | 0x7c00;
    const payload = 0x7c00 + (mantissa >>> 13);
    return sign | (payload === 0x7c00 ? 0x7c01 : payload);
  }
  // Unbiased exponent e: value = 1.m * 2^e. float16 normals have e in [-14, 15].
  const e = exponent - 127;
  if (e > 15) return sign | 0x7c00;
  if (e < -25) return sign; // below half the smallest subnormal: rounds to zero
  if (e < -14) {
    // Subnormal: the significand (with its implicit 1) shifted right, rounded to nearest even.
    const significand = mantissa | 0x800000;
    const shift = -e - 14 + 13; // 14..24
    const kept = significand >>> shift;
    const rest = significand - kept * 2 ** shift;
    const half = 2 ** (shift - 1);
    const rounded = rest > half || (rest === half && kept & 1) ? kept + 1 : kept;
    return sign | rounded; // a carry into 0x400 is the smallest normal, as it should be
  }
  let h = ((e + 15) << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h += 1; // a carry may round up to infinity
  return sign | h;
}

/** float32 values -> float16 bits. */
export function toFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i]);
  return out;
}

/** float16 bits -> float32, bit-exact as numpy (NaN payloads kept). */
export function fromFloat16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const view = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const exponent = (h >> 10) & 0x1f;
    if (exponent === 0) out[i] = float16BitsToFloat32(h); // zero or subnormal: exact as a number
    else view[i] = ((h & 0x8000) << 16) | ((exponent === 31 ? 0xff : exponent + 112) << 23) | ((h & 0x3ff) << 13);
  }
  return out;
}

/** bfloat16 bits -> float32: bfloat16 is the top half of a float32. */
export function fromBfloat16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const view = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) view[i] = bits[i] << 16;
  return out;
}
