// The cheap per-scale preview: a linear latent→RGB map (fitted at export time) applied to the
// current f_hat, one pixel per latent position. The UI scales it up.
import type { Ort } from './backend';
import { toPixels } from './tensorPixels';
import { floatTensor, readFloats, type GraphSession } from './session';
import type { ImagePixels } from './types';

export async function previewImage(
  ort: Ort,
  session: GraphSession,
  fHat: Float32Array,
  channels: number,
  side: number,
  signal?: AbortSignal,
): Promise<ImagePixels> {
  // Only the first image is previewed: the engine generates one image per request.
  const outputs = await session.run({ f_hat: floatTensor(ort, fHat.subarray(0, channels * side * side), [1, channels, side, side]) }, ['image'], signal);
  const [, , height, width] = outputs.image.dims;
  const image = await readFloats(outputs.image);
  outputs.image.dispose();
  return toPixels(image, 0, height, width);
}
