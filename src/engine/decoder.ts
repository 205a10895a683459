// The final stage: the VQ decoder turns the accumulated latent f_hat into the image.
import type { Ort } from './backend';
import { toPixels } from './tensorPixels';
import { floatTensor, readFloats, type GraphSession } from './session';
import type { ImagePixels } from './types';

export async function decodeImage(
  ort: Ort,
  session: GraphSession,
  fHat: Float32Array,
  images: number,
  channels: number,
  side: number,
  signal?: AbortSignal,
): Promise<ImagePixels[]> {
  const outputs = await session.run({ f_hat: floatTensor(ort, fHat, [images, channels, side, side]) }, ['image'], signal);
  const [, , height, width] = outputs.image.dims;
  const image = await readFloats(outputs.image);
  outputs.image.dispose();
  return Array.from({ length: images }, (_, b) => toPixels(image, b, height, width));
}
