// Drawing engine pixels on a 2D canvas. Coarse scales (1×1 … 16×16) are blown up with
// smoothing off so each token stays a crisp block instead of a blur.
import type { ImagePixels } from '../engine/index';

export function drawPixels(canvas: HTMLCanvasElement, pixels: ImagePixels): void {
  const context = canvas.getContext('2d');
  if (!context) return;
  const image = new ImageData(new Uint8ClampedArray(pixels.data), pixels.width, pixels.height);
  if (pixels.width === canvas.width && pixels.height === canvas.height) {
    context.putImageData(image, 0, 0);
    return;
  }
  const source = document.createElement('canvas');
  source.width = pixels.width;
  source.height = pixels.height;
  source.getContext('2d')?.putImageData(image, 0, 0);
  context.imageSmoothingEnabled = false;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.drawImage(source, 0, 0, canvas.width, canvas.height);
}
