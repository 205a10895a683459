// The warm-up generation while loading: it exists to compile WebGPU shaders, so it runs on WebGPU
// only. On WASM (asked for, or the fallback of 'auto') and on the CPU no graph runs while loading,
// and the phase is reported once as skipped so a progress display does not wait on it.
import type { InferenceSession } from 'onnxruntime-common';
import { describe, expect, it } from 'vitest';
import { loadEngine, warmupRuns, type GpuLike, type LoadProgress, type Ort } from '../../src/engine/index';
import { createFsIO } from '../../src/engine/node';
import { FIXTURE, importOrt } from './golden';

/**
 * `base` with every session run counted. With `webgpuOnWasm`, sessions asked for on WebGPU are
 * created on WASM instead (no GPU in Node): the engine loads as on WebGPU, the graphs run on WASM.
 */
function countingOrt(base: Ort, webgpuOnWasm = false) {
  let runs = 0;
  const create = async (bytes: Uint8Array, options: InferenceSession.SessionOptions) => {
    const asked = options.executionProviders?.[0];
    const session = await base.InferenceSession.create(
      bytes,
      webgpuOnWasm && asked === 'webgpu' ? { ...options, executionProviders: ['wasm'], preferredOutputLocation: undefined } : options,
    );
    const run = session.run.bind(session) as InferenceSession['run'];
    session.run = ((...args: Parameters<InferenceSession['run']>) => {
      runs++;
      return run(...args);
    }) as InferenceSession['run'];
    return session;
  };
  const ort = { ...base, InferenceSession: { ...base.InferenceSession, create } } as unknown as Ort;
  return { ort, runs: () => runs };
}

/** A hardware WebGPU adapter without shader-f16 (so the fp32 graphs, which WASM runs too). */
const fakeGpu: GpuLike = {
  requestAdapter: async () => ({ features: new Set<string>(), info: { vendor: 'test', architecture: 'fake-gpu' } }),
};

async function loadCounting(runtime: 'onnxruntime-web' | 'onnxruntime-node', options: { backend: 'auto' | 'wasm' | 'webgpu' | 'cpu'; gpu?: GpuLike | null }) {
  const { ort, runs } = countingOrt(await importOrt(runtime), options.gpu === fakeGpu);
  const progress: LoadProgress[] = [];
  const engine = await loadEngine(FIXTURE, {
    ort,
    io: createFsIO(FIXTURE),
    backend: options.backend,
    gpu: options.gpu,
    storage: null,
    warmup: true,
    onProgress: (p) => progress.push(p),
  });
  const runsWhileLoading = runs();
  const warmup = progress.filter((p) => p.phase === 'warmup');
  return { engine, runsWhileLoading, warmup, progress, runs };
}

describe('warm-up while loading', () => {
  it('runs on WebGPU only', () => {
    expect(warmupRuns('webgpu')).toBe(true);
    expect(warmupRuns('wasm')).toBe(false);
    expect(warmupRuns('cpu')).toBe(false);
  });

  for (const [label, runtime, options] of [
    ['WASM, asked for', 'onnxruntime-web', { backend: 'wasm' }],
    ["WASM, the fallback of 'auto' without WebGPU", 'onnxruntime-web', { backend: 'auto', gpu: null }],
    ['the CPU (onnxruntime-node)', 'onnxruntime-node', { backend: 'cpu' }],
  ] as const) {
    it(`is skipped on ${label}: no graph runs while loading, and the phase is reported once as skipped`, async () => {
      const { engine, runsWhileLoading, warmup, progress, runs } = await loadCounting(runtime, options);
      try {
        expect(engine.info.backend.backend).toBe(runtime === 'onnxruntime-node' ? 'cpu' : 'wasm');
        expect(runsWhileLoading).toBe(0);
        expect(warmup).toHaveLength(1);
        expect(warmup[0]).toMatchObject({ phase: 'warmup', loaded: 0, total: 0, skipped: expect.stringMatching(/no shaders to compile on (WASM|the CPU)/) });
        // Reported as soon as the backend is known: before the download starts.
        expect(progress.indexOf(warmup[0])).toBeLessThan(progress.findIndex((p) => p.phase === 'download'));
        // The engine still works; the first request is what runs the graphs.
        const result = await engine.generate({ prompt: 'a red circle', seed: 1 });
        expect(result.image.width).toBe(engine.info.imageSize);
        expect(runs()).toBeGreaterThan(0);
      } finally {
        await engine.dispose();
      }
    });
  }

  it('runs one full generation on WebGPU, reporting each scale', async () => {
    const { engine, runsWhileLoading, warmup } = await loadCounting('onnxruntime-web', { backend: 'webgpu', gpu: fakeGpu });
    try {
      expect(engine.info.backend.backend).toBe('webgpu');
      expect(runsWhileLoading).toBeGreaterThan(0);
      const count = engine.info.scales.length;
      expect(warmup.some((p) => p.skipped)).toBe(false);
      expect(warmup.map((p) => p.loaded)).toEqual(Array.from({ length: count + 1 }, (_, i) => i));
      expect(warmup.every((p) => p.total === count)).toBe(true);
    } finally {
      await engine.dispose();
    }
  });

  it('is not run when not asked for, on any backend', async () => {
    const { ort, runs } = countingOrt(await importOrt('onnxruntime-web'), true);
    const progress: LoadProgress[] = [];
    const engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE), backend: 'webgpu', gpu: fakeGpu, storage: null, onProgress: (p) => progress.push(p) });
    await engine.dispose();
    expect(runs()).toBe(0);
    expect(progress.some((p) => p.phase === 'warmup')).toBe(false);
  });
});
