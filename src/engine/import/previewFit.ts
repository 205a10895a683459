// The preview graph's weights: a linear latent -> RGB map, fitted by least squares against the
// package's own decoder. Latents are f_hat of random token maps (what the decoder sees while
// sampling) plus a small continuous residual; each decoded image is area-averaged down to the
// latent side. Every step is deterministic: the engine's RNG, the engine's quantizer path
// (scaleUpdate graph, then the last scale's plain addition), one image per decoder run, and
// float64 normal equations summed in a fixed order and solved by Gaussian elimination.
import type { Ort } from '../backend';
import { MANIFEST_FILE, parseManifestBytes, type ModelSpec } from '../manifest';
import { readTables } from '../modelPackage';
import type { PackageIO } from '../readers';
import { addLastScale, scaleTables, updateScale } from '../quantizer';
import { RunQueue } from '../queue';
import { Rng, Stream } from '../rng';
import { createGraphSession, floatTensor, readFloats, type GraphSource, type SessionContext } from '../session';
import type { BackendName } from '../types';

export interface PreviewMap {
  /** [3, Cv] float32. */
  weight: Float32Array;
  /** [3] float32. */
  bias: Float32Array;
}

export interface PreviewFitInput {
  ort: Ort;
  /** 'cpu' (onnxruntime-node) or 'wasm'; the fit's bits depend on the runtime's arithmetic. */
  backend?: BackendName;
  model: ModelSpec;
  /** tables.bin by name (codebook, phiWeight, phiBias, levels, upsample.k, downsample.k). */
  tables: Map<string, Float32Array>;
  decoder: GraphSource;
  scaleUpdate: GraphSource;
  /** Images to decode; by default 16 at 64 px, fewer for larger images, at least 2. */
  count?: number;
  seed?: number;
  signal?: AbortSignal;
}

/** The Python converter's image count: 16 at 64 px, 2 at 1024 px. */
export function previewImageCount(imageSize: number): number {
  return Math.max(2, Math.min(16, Math.floor((16 * 256 * 256) / imageSize ** 2)));
}

/** Random token maps of every scale -> f_hat [count, Cv, h, h] through the engine's quantizer. */
async function randomLatents(input: PreviewFitInput, context: SessionContext, count: number, rng: Rng): Promise<Float32Array> {
  const { model, tables, ort, signal } = input;
  const { patchNums, latentChannels: cv, vocabSize } = model;
  const h = patchNums[patchNums.length - 1];
  const codebook = tables.get('codebook')!;
  const scale = scaleTables(model, tables);
  const session = await createGraphSession(context, 'scaleUpdate', input.scaleUpdate);
  let fHat: Float32Array = new Float32Array(count * cv * h * h);
  try {
    for (let k = 0; k < patchNums.length; k++) {
      const area = patchNums[k] ** 2;
      const u = rng.uniforms(Stream.Token, k, count * area);
      const vectors = new Float32Array(count * area * cv);
      for (let i = 0; i < u.length; i++) {
        const token = Math.floor(u[i] * vocabSize);
        vectors.set(codebook.subarray(token * cv, (token + 1) * cv), i * cv);
      }
      if (k < patchNums.length - 1) {
        const next = await updateScale(ort, session, model, scale, k, fHat, vectors, count, signal);
        next.xNext.dispose();
        fHat = next.fHat;
      } else {
        fHat = addLastScale(fHat, vectors, count, cv, h);
      }
    }
  } finally {
    await session.release();
  }
  // A small continuous residual, 0.1 of the latents' standard deviation (unbiased, float64).
  let mean = 0;
  for (let i = 0; i < fHat.length; i++) mean += fHat[i];
  mean /= fHat.length;
  let square = 0;
  for (let i = 0; i < fHat.length; i++) square += (fHat[i] - mean) ** 2;
  const amplitude = Math.fround(0.1 * Math.sqrt(square / (fHat.length - 1)));
  const noise = rng.normals(Stream.Diffusion, 0, fHat.length);
  for (let i = 0; i < fHat.length; i++) fHat[i] = Math.fround(fHat[i] + Math.fround(amplitude * noise[i]));
  return fHat;
}

/** Solves the symmetric system `a x = b` (n x n, float64) by Gaussian elimination with partial pivoting; b has `m` columns. */
export function solve(a: Float64Array, b: Float64Array, n: number, m: number): Float64Array {
  const A = a.slice();
  const B = b.slice();
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(A[r * n + col]) > Math.abs(A[pivot * n + col])) pivot = r;
    if (A[pivot * n + col] === 0) throw new Error('the preview fit is singular: the decoded latents do not span the latent channels');
    if (pivot !== col) {
      for (let c = 0; c < n; c++) [A[col * n + c], A[pivot * n + c]] = [A[pivot * n + c], A[col * n + c]];
      for (let c = 0; c < m; c++) [B[col * m + c], B[pivot * m + c]] = [B[pivot * m + c], B[col * m + c]];
    }
    for (let r = col + 1; r < n; r++) {
      const f = A[r * n + col] / A[col * n + col];
      if (f === 0) continue;
      for (let c = col; c < n; c++) A[r * n + c] -= f * A[col * n + c];
      for (let c = 0; c < m; c++) B[r * m + c] -= f * B[col * m + c];
    }
  }
  const x = new Float64Array(n * m);
  for (let r = n - 1; r >= 0; r--) {
    for (let c = 0; c < m; c++) {
      let s = B[r * m + c];
      for (let j = r + 1; j < n; j++) s -= A[r * n + j] * x[j * m + c];
      x[r * m + c] = s / A[r * n + r];
    }
  }
  return x;
}

export async function fitPreview(input: PreviewFitInput): Promise<PreviewMap> {
  const { model, ort, signal } = input;
  const count = input.count ?? previewImageCount(model.imageSize);
  const context: SessionContext = { ort, backend: input.backend ?? 'cpu', queue: new RunQueue() };
  const rng = new Rng(input.seed ?? 0);
  const latents = await randomLatents(input, context, count, rng);
  const cv = model.latentChannels;
  const h = model.patchNums[model.patchNums.length - 1];
  const n = cv + 1; // the latent channels and a constant 1 for the bias
  const xtx = new Float64Array(n * n);
  const xty = new Float64Array(n * 3);
  const row = new Float64Array(n);
  const decoder = await createGraphSession(context, 'decoder', input.decoder);
  try {
    for (let b = 0; b < count; b++) {
      const latent = latents.subarray(b * cv * h * h, (b + 1) * cv * h * h);
      const outputs = await decoder.run({ f_hat: floatTensor(ort, latent, [1, cv, h, h]) }, ['image'], signal);
      const side = outputs.image.dims[3];
      const image = await readFloats(outputs.image);
      outputs.image.dispose();
      const factor = side / h;
      if (!Number.isInteger(factor)) throw new Error(`the decoder's image side ${side} is not a multiple of the latent side ${h}`);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < h; x++) {
          const rgb = [0, 0, 0];
          for (let ch = 0; ch < 3; ch++) {
            let sum = 0;
            for (let dy = 0; dy < factor; dy++) {
              for (let dx = 0; dx < factor; dx++) sum += image[(ch * side + y * factor + dy) * side + x * factor + dx];
            }
            rgb[ch] = sum / (factor * factor);
          }
          for (let c = 0; c < cv; c++) row[c] = latent[(c * h + y) * h + x];
          row[cv] = 1;
          for (let i = 0; i < n; i++) {
            for (let j = 0; j < n; j++) xtx[i * n + j] += row[i] * row[j];
            for (let ch = 0; ch < 3; ch++) xty[i * 3 + ch] += row[i] * rgb[ch];
          }
        }
      }
    }
  } finally {
    await decoder.release();
  }
  const solution = solve(xtx, xty, n, 3); // [Cv + 1, 3]
  const weight = new Float32Array(3 * cv);
  const bias = new Float32Array(3);
  for (let ch = 0; ch < 3; ch++) {
    for (let c = 0; c < cv; c++) weight[ch * cv + c] = solution[c * 3 + ch];
    bias[ch] = solution[cv * 3 + ch];
  }
  return { weight, bias };
}

/**
 * Fits the preview map of a package folder: its manifest names the decoder and scaleUpdate
 * graphs (fp32) and tables.bin. Files are read as they are, unverified, so that a converter can
 * fit the map of a package it is still writing (only the preview's own weights are missing).
 */
export async function fitPreviewOfPackage(io: PackageIO, ort: Ort, options: { backend?: BackendName; count?: number; seed?: number; signal?: AbortSignal } = {}): Promise<PreviewMap> {
  const manifest = parseManifestBytes(await io.read(MANIFEST_FILE), MANIFEST_FILE);
  const files = new Map<string, Uint8Array>();
  const read = async (path: string) => {
    if (!files.has(path)) files.set(path, await io.read(path, { signal: options.signal }));
    return files.get(path)!;
  };
  const graph = async (name: 'decoder' | 'scaleUpdate'): Promise<GraphSource> => {
    const variant = manifest.graphs[name].fp32;
    const externalData = [];
    for (const path of variant.externalData ?? []) externalData.push({ path, data: await read(path) });
    return { path: variant.path, bytes: await read(variant.path), externalData };
  };
  for (const table of Object.values(manifest.tables)) await read(table.path);
  return fitPreview({
    ort,
    backend: options.backend,
    model: manifest.model,
    tables: readTables(manifest, files),
    decoder: await graph('decoder'),
    scaleUpdate: await graph('scaleUpdate'),
    count: options.count,
    seed: options.seed,
    signal: options.signal,
  });
}
