// The parity check through the app's engine worker with test hooks (hooked.worker.ts: the app's
// worker code, built by Vite as the app builds it, plus testHooks.ts): load the golden fixture in the worker, run both golden cases with the
// fixture's draws, then cancel a run mid-way and check the next runs are good and identical.
// Not a vitest file: run.mjs builds worker.html with Vite and drives it in Chromium.
import * as Comlink from 'comlink';
import type { BackendChoice } from '../../../workers/protocol';
import type { HookedWorkerApi } from './testHooks';
import type { GenerateEvent } from '../../../src/engine/types';
import { goldenCases, maxPixelDiff, sameBytes, tokenMismatches } from './fixture';
import { createEngineClient } from '../../../src/app/engineClient';
import { createMemoryGalleryStorage } from '../../../src/app/galleryStorage';
import { createAppStore } from '../../../src/app/store';
import type { AppDeps } from '../../../src/app/storeTypes';
import { encodePng } from '../../../src/engine/index';

/** Failures cross comlink as plain `{ code, message }` objects. */
function failureCode(error: unknown): string {
  return (error as { code?: string })?.code ?? String(error);
}

async function check(backend: Exclude<BackendChoice, 'auto'>) {
  const worker = new Worker(new URL('./hooked.worker.ts', import.meta.url), { type: 'module', name: 'hart-engine' });
  const api = Comlink.wrap<HookedWorkerApi>(worker);
  const errors: string[] = [];
  worker.addEventListener('error', (e) => errors.push(e.message));
  try {
    const loadStarted = performance.now();
    const info = await api.load({ kind: 'url', url: new URL('/fixture/', location.href).href }, { backend });
    const loadMs = Math.round(performance.now() - loadStarted);

    const cases = await goldenCases();
    const results = [];
    for (const g of cases) {
      const started = performance.now();
      const result = await api.generate({ prompt: g.prompt, seed: 0, settings: g.settings, draws: g.draws, traceTokens: true });
      results.push({
        name: g.name,
        maxPixelDiff: maxPixelDiff(g.pixels, result.image.data),
        tokenMismatches: tokenMismatches(g.tokens, result.tracedTokens),
        ms: Math.round(performance.now() - started),
      });
    }

    // Cancel from the page once the second scale is reported, as the app's Cancel button does.
    const seen: string[] = [];
    const cancelStarted = performance.now();
    const onEvent = (e: GenerateEvent) => {
      seen.push(`${e.type === 'scale' ? `scale${e.index}` : e.type}@${Math.round(performance.now() - cancelStarted)}`);
      if (e.type === 'scale' && e.index === 1) void api.cancel();
    };
    const cancelled = await api.generate({ prompt: 'a red circle', seed: 1 }, Comlink.proxy(onEvent)).then(
      () => 'finished',
      failureCode,
    );
    // The run after the cancelled one must be a good one: the first golden case again.
    const again = await api.generate({ prompt: cases[0].prompt, seed: 0, settings: cases[0].settings, draws: cases[0].draws });
    const a = await api.generate({ prompt: 'a red circle', seed: 1 });
    const b = await api.generate({ prompt: 'a red circle', seed: 1 });
    return {
      backend: info.backend,
      loadMs,
      results,
      cancelled,
      cancelEvents: seen,
      afterCancelPixelDiff: maxPixelDiff(cases[0].pixels, again.image.data),
      deterministic: sameBytes(a.image.data, b.image.data),
      // Without traceTokens the worker adds nothing to the app's result.
      plainResult: !('tracedTokens' in a),
      workerErrors: errors,
    };
  } finally {
    worker.terminate();
  }
}

(window as unknown as { runWorkerCheck: typeof check }).runWorkerCheck = check;

/**
 * A WebGPU device lost mid-run, through the app's store and engine client over the test worker:
 * the hook destroys ORT's device when scale 1 is reported. The run must fail as `device-lost`,
 * the store must bring up a fresh worker with the model loaded again, and the next Generate must
 * finish, all without reloading the page.
 */
async function checkDeviceLoss() {
  const client = createEngineClient(() => new Worker(new URL('./hooked.worker.ts', import.meta.url), { type: 'module', name: 'hart-engine' }));
  let loseDevice = true;
  const hooked: AppDeps['client'] = {
    ...client,
    generate(request, onEvent) {
      const withHook = loseDevice ? { ...request, loseDeviceAtScale: 1 } : request;
      loseDevice = false;
      return client.generate(withHook, onEvent);
    },
  };
  let ids = 0;
  const store = createAppStore(
    {
      client: hooked,
      gallery: createMemoryGalleryStorage(),
      encodePng,
      now: () => performance.now(),
      clock: () => Date.now(),
      randomSeed: () => 1,
      newId: () => `image-${++ids}`,
    },
    'webgpu',
  );
  const settled = (test: (state: ReturnType<typeof store.getState>) => boolean) =>
    new Promise<void>((resolve) => {
      if (test(store.getState())) return resolve();
      const stop = store.subscribe((state) => {
        if (!test(state)) return;
        stop();
        resolve();
      });
    });
  try {
    await store.getState().loadModel({ kind: 'url', url: new URL('/fixture/', location.href).href }, 'fixture');
    const before = store.getState().modelInfo?.backend.backend;
    store.getState().setPrompt('a red circle');
    await store.getState().generate();
    const lost = { phase: store.getState().run.phase, error: store.getState().runError };
    await settled((s) => s.modelStatus !== 'loading' && Boolean(s.modelInfo || s.modelError));
    const reloaded = { status: store.getState().modelStatus, backend: store.getState().modelInfo?.backend, modelError: store.getState().modelError };
    await store.getState().generate();
    const after = store.getState();
    return {
      before,
      lost,
      reloaded,
      next: { phase: after.run.phase, error: after.runError, gallery: after.gallery.length, width: after.gallery[0]?.width },
    };
  } finally {
    client.dispose();
  }
}

(window as unknown as { runDeviceLossCheck: typeof checkDeviceLoss }).runDeviceLossCheck = checkDeviceLoss;
