// A picked or dropped image file → RGBA pixels at its own size, decoded by the browser (PNG,
// JPEG, WebP, …). Cropping and resizing to the model's size are the engine's (one owner).
import type { StartImage } from '../app/storeTypes';

export async function readImageFile(file: File): Promise<StartImage> {
  if (file.type && !file.type.startsWith('image/')) throw new Error(`${file.name} is not an image (${file.type}).`);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name} could not be read: it is not an image this browser can decode.`);
  }
  try {
    const canvas = document.createElement('canvas');
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const context = canvas.getContext('2d');
    if (!context) throw new Error(`${file.name} could not be read: this browser gave no 2D canvas.`);
    context.drawImage(bitmap, 0, 0);
    const { data, width, height } = context.getImageData(0, 0, bitmap.width, bitmap.height);
    return { image: { width, height, data }, name: file.name };
  } finally {
    bitmap.close();
  }
}
