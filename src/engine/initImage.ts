// Image to image's way in: an image of any size → the model's square input (centre-crop, then
// resize) → the encoder graph → the token maps of every scale and the continuous residual. The
// sampling loop then keeps the maps of the scales before `fromScale` as a vary keeps an earlier
// image's (pipeline.ts).
import type { Ort } from './backend';
import { BadInputError } from './errors';
import type { ModelSpec } from './manifest';
import { floatTensor, readFloats, type GraphSession } from './session';
import { toPixels } from './tensorPixels';
import type { ImagePixels, InitImage } from './types';

/**
 * Resampling weights [out, in] along one axis, each row summing to 1: area averaging (the
 * overlap of each output pixel's span with each input pixel) when shrinking, so every input pixel
 * counts, and linear interpolation between pixel centres when enlarging (area weights would
 * repeat pixels into blocks). Computed in float64.
 */
export function resampleWeights(out: number, input: number): Float64Array[] {
  const rows: Float64Array[] = [];
  const scale = input / out;
  for (let o = 0; o < out; o++) {
    const row = new Float64Array(input);
    if (input >= out) {
      const start = o * scale;
      const end = start + scale;
      for (let i = Math.floor(start); i < Math.min(input, Math.ceil(end)); i++) {
        row[i] = (Math.min(end, i + 1) - Math.max(start, i)) / scale;
      }
    } else {
      const centre = Math.min(Math.max((o + 0.5) * scale - 0.5, 0), input - 1);
      const left = Math.floor(centre);
      const t = centre - left;
      row[left] += 1 - t;
      if (t > 0) row[left + 1] += t;
    }
    rows.push(row);
  }
  return rows;
}

/** The largest centred square of the image, as [left, top, side]. */
export function centreSquare(width: number, height: number): [number, number, number] {
  const side = Math.min(width, height);
  return [Math.floor((width - side) / 2), Math.floor((height - side) / 2), side];
}

/** Throws a BadInputError unless `image` holds width × height pixels of 3 or 4 bytes. */
export function checkInitImage(image: InitImage): void {
  const channels = image?.channels ?? 4;
  const { width, height, data } = image ?? ({} as InitImage);
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) {
    throw new BadInputError(`The init image's size ${width}×${height} is not a size in whole pixels.`);
  }
  if (channels !== 3 && channels !== 4) throw new BadInputError(`The init image has ${channels} channels; it must be RGB (3) or RGBA (4).`);
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray) || data.length !== width * height * channels) {
    throw new BadInputError(`The init image must hold ${width}×${height}×${channels} = ${width * height * channels} bytes, got ${data?.length ?? 'none'}.`);
  }
}

/**
 * The encoder's input [1, 3, size, size] in [0, 1]: the centred square of the image resized to
 * `size`. A transparent pixel is composited over white (alpha does not enter the model, and an
 * uploaded logo's transparent background should not read as black).
 */
export function imageToTensor(image: InitImage, size: number): Float32Array {
  const channels = image.channels ?? 4;
  const [left, top, side] = centreSquare(image.width, image.height);
  const weights = resampleWeights(size, side);
  // sRGB bytes / 255, composited as they are: the tokenizer was trained on those values.
  const plane = side * side;
  const source = new Float64Array(3 * plane);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const at = ((top + y) * image.width + left + x) * channels;
      const alpha = channels === 4 ? image.data[at + 3] / 255 : 1;
      for (let c = 0; c < 3; c++) source[c * plane + y * side + x] = (image.data[at + c] / 255) * alpha + (1 - alpha);
    }
  }
  // Separable: rows first (side → size columns), then columns.
  const rows = new Float64Array(3 * side * size);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < side; y++) {
      for (let o = 0; o < size; o++) {
        const w = weights[o];
        let sum = 0;
        for (let x = 0; x < side; x++) if (w[x] !== 0) sum += w[x] * source[c * plane + y * side + x];
        rows[(c * side + y) * size + o] = sum;
      }
    }
  }
  const out = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++) {
    for (let o = 0; o < size; o++) {
      const w = weights[o];
      for (let x = 0; x < size; x++) {
        let sum = 0;
        for (let y = 0; y < side; y++) if (w[y] !== 0) sum += w[y] * rows[(c * side + y) * size + x];
        out[(c * size + o) * size + x] = Math.min(1, Math.max(0, sum));
      }
    }
  }
  return out;
}

/** The image as the model sees it (centre-cropped, resized to `size`), as RGBA bytes to show. */
export function initImagePixels(image: InitImage, size: number): ImagePixels {
  return toPixels(imageToTensor(image, size), 0, size, size);
}

/** What the encoder gives the loop: every scale's token map and the image's continuous residual. */
export interface EncodedImage {
  maps: Int32Array[];
  /** f − f_hat [1, Cv, h, h]: what the token maps leave of the image's latent. */
  residual: Float32Array;
}

/** Runs the encoder graph on a prepared image tensor and splits its tokens into per-scale maps. */
export async function encodeImage(ort: Ort, session: GraphSession, model: ModelSpec, pixels: Float32Array, signal?: AbortSignal): Promise<EncodedImage> {
  const size = model.imageSize;
  const outputs = await session.run({ image: floatTensor(ort, pixels, [1, 3, size, size]) }, ['f', 'tokens', 'f_hat'], signal);
  try {
    const f = await readFloats(outputs.f);
    const fHat = await readFloats(outputs.f_hat);
    const tokens = (await outputs.tokens.getData()) as Int32Array;
    const maps: Int32Array[] = [];
    let start = 0;
    for (const pn of model.patchNums) {
      maps.push(Int32Array.from(tokens.subarray(start, start + pn * pn)));
      start += pn * pn;
    }
    const residual = new Float32Array(f.length);
    for (let i = 0; i < f.length; i++) residual[i] = f[i] - fHat[i];
    return { maps, residual };
  } finally {
    for (const tensor of Object.values(outputs)) tensor.dispose();
  }
}
