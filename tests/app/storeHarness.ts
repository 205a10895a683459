// Builds the real app store on top of the real worker host and a fake engine, so store tests
// exercise everything but comlink and onnxruntime.
import { createEngineHost, type ImportModel } from '../../workers/engineHost';
import { createAppStore } from '../../src/app/store';
import { createMemoryGalleryStorage, type GalleryStorage } from '../../src/app/galleryStorage';
import type { AppFailure, ModelSource } from '../../workers/protocol';
import { throwIfCancelled } from '../../src/engine/errors';
import type { ImagePixels, LoadProgress, ModelInfo } from '../../src/engine/types';
import { checkNeedsFit, type PreflightEnv } from '../../src/engine/preflight';
import type { GalleryEntry } from '../../src/app/galleryEntry';
import type { AppDeps } from '../../src/app/storeTypes';
import type { ModelCache } from '../../src/app/modelCache';
import { createFakeEngine, fakeInfo, type FakeEngineControls } from '../workers/fakeEngine';

export interface Harness {
  store: ReturnType<typeof createAppStore>;
  fake: FakeEngineControls;
  /** The client the store talks to; tests may wrap its methods. */
  client: AppDeps['client'];
  crash(failure: AppFailure, restarted?: boolean): void;
  loads: number;
  /** Fresh workers asked for (client.restart). */
  restarts: number;
  encoded: Array<Record<string, string>>;
}

export interface HarnessOptions {
  /** What the worker's import does (it cannot import by default). */
  importModel?: ImportModel;
  info?: ModelInfo;
  stepMs?: number;
  gallery?: GalleryEntry[];
  failLoad?: AppFailure;
  cache?: ModelCache;
  /** Where kept images go (in memory by default). */
  galleryStorage?: GalleryStorage;
  /** The load's progress reports, instead of the default download and upload ones. */
  loadProgress?: LoadProgress[];
  /** The load finishes only once this settles (to look at the page mid-load). */
  holdLoad?: Promise<unknown>;
  /** Per source: a promise the load waits on (then stops if it was cancelled meanwhile). */
  holdSource?: (source: ModelSource) => Promise<unknown> | undefined;
  /** The model list the page reads (none by default), and the device the worker reports. */
  catalog?: unknown;
  device?: Omit<PreflightEnv, 'fp16' | 'cached' | 'backend'>;
}

export function createHarness(options: HarnessOptions = {}): Harness {
  const fake = createFakeEngine(options.info ?? fakeInfo(), options.stepMs ?? 1);
  const crashListeners: Array<(f: AppFailure, restarted: boolean) => void> = [];
  let seeds = 1000;
  let ids = 0;
  const harness: Harness = {
    store: undefined as never,
    client: undefined as never,
    fake,
    loads: 0,
    restarts: 0,
    encoded: [],
    crash: (failure, restarted = true) => crashListeners.forEach((l) => l(failure, restarted)),
  };
  const host = createEngineHost(async (_source, opts) => {
    harness.loads++;
    if (options.failLoad) throw options.failLoad;
    const progress = options.loadProgress ?? [
      { phase: 'download', file: 'transformer.onnx', loaded: 50, total: 100 },
      { phase: 'download', file: 'transformer.onnx', loaded: 100, total: 100 },
      { phase: 'upload', loaded: 8, total: 8 },
    ];
    progress.forEach((p) => opts.onProgress?.(p));
    await options.holdLoad;
    const hold = options.holdSource?.(_source);
    if (hold) {
      await hold;
      throwIfCancelled(opts.signal, 'Loading was cancelled.');
    }
    return fake.engine;
  }, async (needs, diskBytes) => ({
    ...checkNeedsFit(needs, diskBytes, { backend: 'wasm', ...options.device }),
    backend: { backend: 'wasm', fp16: false, reason: 'the harness runs WASM' },
  }), options.importModel);
  harness.client = {
    ...host,
    onCrash(listener) {
      crashListeners.push(listener);
      return () => undefined;
    },
    restart() {
      harness.restarts++;
    },
  };
  harness.store = createAppStore(
    {
      client: harness.client,
      gallery: options.galleryStorage ?? createMemoryGalleryStorage(options.gallery),
      async encodePng(pixels: ImagePixels, text: Record<string, string>) {
        harness.encoded.push(text);
        return new Uint8Array([137, 80, 78, 71, pixels.width]);
      },
      now: () => performance.now(),
      clock: () => 1_700_000_000_000,
      randomSeed: () => seeds++,
      newId: () => `img-${++ids}`,
      analyzeDelayMs: 0,
      cache: options.cache,
      appBase: 'http://localhost/',
      catalog:
        options.catalog === undefined
          ? undefined
          : {
              url: 'http://localhost/models/catalog.json',
              fetch: async () => {
                if (options.catalog instanceof Error) throw options.catalog;
                return options.catalog;
              },
            },
    },
    'wasm',
  );
  return harness;
}

export async function loaded(options: Parameters<typeof createHarness>[0] = {}): Promise<Harness> {
  const harness = createHarness(options);
  await harness.store.getState().loadModel({ kind: 'url', url: 'http://localhost/models/fake/' }, 'fake');
  return harness;
}
