import { describe, expect, it } from 'vitest';
import { PNG } from 'pngjs';
import { encodePng, readPngText } from '../../src/engine/png';

function gradient(width: number, height: number): Uint8ClampedArray {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      data.set([(x * 37) & 255, (y * 91) & 255, (x * y) & 255, 255 - ((x + y) & 127)], i);
    }
  }
  return data;
}

describe('png', () => {
  it('round-trips pixels through an independent decoder', async () => {
    const pixels = { width: 13, height: 7, data: gradient(13, 7) };
    const bytes = await encodePng(pixels, { prompt: 'a red circle' });
    const decoded = PNG.sync.read(Buffer.from(bytes));
    expect(decoded.width).toBe(13);
    expect(decoded.height).toBe(7);
    expect(Array.from(decoded.data)).toEqual(Array.from(pixels.data));
  });

  it('writes text chunks that read back, Latin-1 as tEXt and other scripts as iTXt', async () => {
    const text = { prompt: 'a red circle on a blue background', seed: '7', settings: '{"cfg":4}', note: 'café ✓ 円' };
    const bytes = await encodePng({ width: 2, height: 2, data: gradient(2, 2) }, text);
    expect(readPngText(bytes)).toEqual(text);
    const asString = Buffer.from(bytes).toString('latin1');
    expect(asString).toContain('tEXtprompt\0a red circle');
    expect(asString).toContain('iTXtnote\0');
  });

  it('rejects wrong sizes, bad keywords and non-PNG bytes', async () => {
    await expect(encodePng({ width: 2, height: 2, data: new Uint8ClampedArray(15) }, {})).rejects.toThrow(/expected 16/);
    await expect(encodePng({ width: 1, height: 1, data: new Uint8ClampedArray(4) }, { '': 'x' })).rejects.toThrow(/keyword/);
    expect(() => readPngText(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]))).toThrow(/signature/);
  });

  it('detects a truncated chunk', async () => {
    const bytes = await encodePng({ width: 4, height: 4, data: gradient(4, 4) }, { prompt: 'x'.repeat(50) });
    expect(() => readPngText(bytes.subarray(0, 60))).toThrow(/truncated/);
  });
});
