// Image tensors [B, 3, H, W] in [0, 1] → RGBA bytes, by truncation (floor(255·v)) as HART's
// sample.py does (the product in float64, as tools/hart/sampler.py's to_pixels).
import type { ImagePixels } from './types';

export function toPixels(image: Float32Array, index: number, height: number, width: number): ImagePixels {
  const area = height * width;
  const base = index * 3 * area;
  const data = new Uint8ClampedArray(area * 4);
  for (let p = 0; p < area; p++) {
    for (let c = 0; c < 3; c++) {
      const v = 255 * image[base + c * area + p];
      data[p * 4 + c] = v >= 255 ? 255 : v <= 0 ? 0 : Math.floor(v);
    }
    data[p * 4 + 3] = 255;
  }
  return { width, height, data };
}
