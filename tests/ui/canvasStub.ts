// jsdom has no 2D canvas. This stub keeps the last pixels put on each canvas, so component tests
// can check what the page actually drew.
export interface Drawn {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

const drawn = new WeakMap<HTMLCanvasElement, Drawn>();

export function lastDrawn(canvas: Element): Drawn | undefined {
  return drawn.get(canvas as HTMLCanvasElement);
}

export function installCanvasStub(): void {
  class ImageDataStub {
    constructor(
      readonly data: Uint8ClampedArray,
      readonly width: number,
      readonly height: number,
    ) {}
  }
  (globalThis as { ImageData?: unknown }).ImageData = ImageDataStub;
  HTMLCanvasElement.prototype.getContext = function (this: HTMLCanvasElement) {
    const canvas = this;
    return {
      imageSmoothingEnabled: true,
      putImageData(image: ImageDataStub) {
        drawn.set(canvas, { width: image.width, height: image.height, data: image.data });
      },
      drawImage(source: HTMLCanvasElement) {
        const from = drawn.get(source);
        if (from) drawn.set(canvas, from);
      },
      clearRect() {
        drawn.delete(canvas);
      },
    };
  } as unknown as typeof HTMLCanvasElement.prototype.getContext;
}
