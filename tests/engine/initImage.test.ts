// Image to image: the init image's preparation (centre-crop, resize) and the engine keeping its
// token maps; with every scale kept the engine gives back the tokenizer's reconstruction.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/engine/decoder';
import { loadEngine } from '../../src/engine/index';
import { centreSquare, encodeImage, imageToTensor, resampleWeights } from '../../src/engine/initImage';
import { createFsIO } from '../../src/engine/node';
import type { InitImage } from '../../src/engine/types';
import { FIXTURE, importOrt } from './golden';

type Loaded = Awaited<ReturnType<typeof loadEngine>>;
const PROMPT = 'a red circle on a blue background';

/** Deterministic RGBA noise of a given size. */
function noiseImage(width: number, height: number, seed = 1): InitImage {
  const data = new Uint8ClampedArray(width * height * 4);
  let state = seed;
  for (let i = 0; i < data.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    data[i] = i % 4 === 3 ? 255 : state >>> 24;
  }
  return { width, height, data };
}

describe('init image preparation', () => {
  it('resampling rows sum to 1, shrinking averages areas and enlarging interpolates', () => {
    for (const [out, input] of [[4, 12], [5, 7], [8, 3], [6, 6]]) {
      for (const row of resampleWeights(out, input)) expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    }
    expect([...resampleWeights(2, 4)[1]]).toEqual([0, 0, 0.5, 0.5]);
    expect([...resampleWeights(4, 2)[1]]).toEqual([0.75, 0.25]);
    expect([...resampleWeights(3, 3)[2]]).toEqual([0, 0, 1]);
  });

  it('an image of the model size passes as bytes / 255; RGB and RGBA agree; alpha composites over white', () => {
    const rgba = noiseImage(4, 4);
    const tensor = imageToTensor(rgba, 4);
    for (let p = 0; p < 16; p++) for (let c = 0; c < 3; c++) expect(tensor[c * 16 + p]).toBe(Math.fround(rgba.data[p * 4 + c] / 255));
    const rgb = new Uint8Array(48);
    for (let p = 0; p < 16; p++) for (let c = 0; c < 3; c++) rgb[p * 3 + c] = rgba.data[p * 4 + c];
    expect(imageToTensor({ width: 4, height: 4, data: rgb, channels: 3 }, 4)).toEqual(tensor);
    const clear = { width: 1, height: 1, data: new Uint8ClampedArray([0, 0, 0, 0]) };
    expect([...imageToTensor(clear, 1)]).toEqual([1, 1, 1]);
  });

  it('takes the centred square: a wide image loses its left and right bands', () => {
    expect(centreSquare(6, 2)).toEqual([2, 0, 2]);
    expect(centreSquare(3, 8)).toEqual([0, 2, 3]);
    // 6×2: red, red, blue, blue, red, red in every row → the square is all blue.
    const data = new Uint8ClampedArray(6 * 2 * 4);
    for (let y = 0; y < 2; y++) for (let x = 0; x < 6; x++) data.set(x === 2 || x === 3 ? [0, 0, 255, 255] : [255, 0, 0, 255], (y * 6 + x) * 4);
    const tensor = imageToTensor({ width: 6, height: 2, data }, 4);
    expect([...tensor.subarray(0, 16)].every((v) => v === 0)).toBe(true);
    expect([...tensor.subarray(32, 48)].every((v) => v === 1)).toBe(true);
  });
});

describe('image to image on the tiny package (onnxruntime-node)', () => {
  let engine: Loaded;
  const K = () => engine.info.scales.length;
  const size = () => engine.info.imageSize;

  beforeAll(async () => {
    const ort = await importOrt('onnxruntime-node');
    engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE) });
  });
  afterAll(() => engine?.dispose());

  /** The encoder's outputs for an image (centre-cropped and resized as the engine does), run on the graph directly. */
  async function encoded(image: InitImage) {
    const session = await engine.model.encoder!();
    const { ort, manifest } = engine.model;
    const outputs = await session.run({ image: new ort.Tensor('float32', imageToTensor(image, size()), [1, 3, size(), size()]) }, ['f', 'tokens', 'f_hat']);
    const { maps } = await encodeImage(ort, session, manifest.model, imageToTensor(image, size()));
    return { f: outputs.f.data as Float32Array, fHat: outputs.f_hat.data as Float32Array, maps };
  }

  async function decoded(latent: Float32Array) {
    const { ort, sessions, manifest } = engine.model;
    const side = manifest.model.patchNums.at(-1)!;
    return (await decodeImage(ort, sessions.decoder, latent, 1, manifest.model.latentChannels, side))[0].data;
  }

  function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    return worst;
  }

  it('says the package can start from an image', () => {
    expect(engine.info.imageToImage).toBe(true);
  });

  it('fromScale K + 1 keeps every scale: the image is the decoder of f (residual on) or of f_hat (residual off)', async () => {
    const image = noiseImage(size(), size(), 5);
    const { f, fHat } = await encoded(image);
    const events: string[] = [];
    const continuous = await engine.generate({ prompt: PROMPT, seed: 1, initImage: image, fromScale: K() + 1 }, { onEvent: (e) => events.push(e.type) });
    expect(maxDifference(continuous.image.data, await decoded(f))).toBeLessThanOrEqual(1);
    const discrete = await engine.generate({ prompt: PROMPT, seed: 2, initImage: image, fromScale: K() + 1, settings: { residual: false } });
    expect(maxDifference(discrete.image.data, await decoded(fHat))).toBe(0);
    expect(events.filter((e) => e === 'scale')).toHaveLength(K());
    expect(events).not.toContain('diffusion');
    expect(continuous).toMatchObject({ fromScale: K() + 1, timings: { reusedScales: K() } });
    expect(continuous.timings.encoder).toBeGreaterThan(0);
    expect(continuous.variedFrom).toBeUndefined();
  });

  it('fromScale k keeps the image maps of scales 1…k−1 and samples the rest, deterministically', async () => {
    const image = noiseImage(size() * 2, size() + 3, 9);
    const { maps } = await encoded(image);
    for (let k = 1; k <= K(); k++) {
      const result = await engine.generate({ prompt: PROMPT, seed: 4, initImage: image, fromScale: k, previews: false });
      expect(result.tokens.maps.slice(0, k - 1)).toEqual(maps.slice(0, k - 1));
      expect(result.tokens.seeds).toEqual(engine.info.scales.map(() => 4));
      expect(result).toMatchObject({ fromScale: k, timings: { reusedScales: k - 1 } });
      const again = await engine.generate({ prompt: PROMPT, seed: 4, initImage: image, fromScale: k, previews: false });
      expect(Buffer.from(again.image.data).equals(Buffer.from(result.image.data))).toBe(true);
    }
    const smooth = await engine.generate({ prompt: PROMPT, seed: 4, initImage: image, fromScale: 3, settings: { smooth: true } });
    expect(smooth.tokens.maps.slice(0, 2)).toEqual(maps.slice(0, 2));
  });

  it('refuses a scale outside 1…K+1, fromScale without an image, an image without fromScale, bad pixels and vary with an image', async () => {
    const image = noiseImage(size(), size());
    const request = { prompt: PROMPT, seed: 1 };
    for (const fromScale of [0, K() + 2, 1.5]) {
      await expect(engine.generate({ ...request, initImage: image, fromScale })).rejects.toMatchObject({
        code: 'bad-input',
        message: `fromScale = ${fromScale} is invalid: it must be a whole number from 1 to ${K() + 1} (scales count from 1; ${K() + 1} keeps every scale of the image).`,
      });
    }
    await expect(engine.generate({ ...request, fromScale: 2 })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/needs an init image/) });
    await expect(engine.generate({ ...request, initImage: image })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/needs fromScale/) });
    await expect(engine.generate({ ...request, initImage: { ...image, data: image.data.subarray(1) }, fromScale: 2 })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/must hold/) });
    const source = await engine.generate(request);
    await expect(engine.generate({ ...request, initImage: image, fromScale: 2, vary: { fromScale: 2, tokens: source.tokens } })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/not both/) });
  });

  it('is cancellable', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(engine.generate({ prompt: PROMPT, seed: 1, initImage: noiseImage(size(), size()), fromScale: 2 }, { signal: controller.signal })).rejects.toMatchObject({ code: 'cancelled' });
  });

  it('a package without the encoder graph loads, and image to image says it has no encoder', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'hart-no-encoder-'));
    try {
      cpSync(FIXTURE, folder, { recursive: true });
      const manifest = JSON.parse(readFileSync(path.join(folder, 'manifest.json'), 'utf8'));
      delete manifest.graphs.encoder;
      writeFileSync(path.join(folder, 'manifest.json'), JSON.stringify(manifest));
      const ort = await importOrt('onnxruntime-node');
      const old = await loadEngine(folder, { ort, io: createFsIO(folder) });
      try {
        expect(old.info.imageToImage).toBe(false);
        await expect(old.generate({ prompt: PROMPT, seed: 1, initImage: noiseImage(size(), size()), fromScale: 2 })).rejects.toMatchObject({
          code: 'bad-input',
          message: `The model ${old.info.name} has no encoder graph, so it cannot start from an image.`,
        });
      } finally {
        await old.dispose();
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
