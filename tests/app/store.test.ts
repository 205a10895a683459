import { describe, expect, it, vi } from 'vitest';
import { progressFraction, statusText } from '../../src/app/runStatus';
import { loadPercent, pageStatus } from '../../src/app/selectors';
import type { AppState } from '../../src/app/storeTypes';
import type { LoadProgress } from '../../src/engine/types';
import { fakeInfo } from '../workers/fakeEngine';
import { createMemoryGalleryStorage } from '../../src/app/galleryStorage';
import { createHarness, loaded } from './storeHarness';

describe('app store', () => {
  it('loads the model, keeps per-phase progress and takes the model defaults', async () => {
    const { store } = createHarness({ info: fakeInfo({ defaults: { cfg: 2, topK: 5, topP: 0.5, temperature: 0.9, smooth: true, residual: true, guidedScales: 6 } }) });
    const pending = store.getState().loadModel({ kind: 'url', url: 'http://x/m/' }, 'm');
    expect(store.getState().modelStatus).toBe('loading');
    await pending;
    const state = store.getState();
    expect(state.modelStatus).toBe('ready');
    expect(state.loadPhases.download).toEqual({ phase: 'download', file: 'transformer.onnx', loaded: 100, total: 100 });
    expect(state.loadPhases.upload?.loaded).toBe(8);
    expect(state.settings).toEqual({ cfg: 2, topK: 5, topP: 0.5, temperature: 0.9, smooth: true, residual: true, guidedScales: 6 });
  });

  it('a phase reported as skipped (warm-up on WASM) is listed, never named by the status line, and the bar fills without it', async () => {
    /** The state mid-load, after `progress`, with the load held open. */
    async function midLoad(progress: LoadProgress[]) {
      let release!: () => void;
      const { store } = createHarness({ loadProgress: progress, holdLoad: new Promise<void>((r) => (release = r)) });
      const pending = store.getState().loadModel({ kind: 'url', url: 'http://x/m/' }, 'm');
      await vi.waitFor(() => expect(store.getState().loadPhases.upload).toBeDefined());
      const state = store.getState();
      release();
      await pending;
      return { state, after: store.getState() };
    }
    const manifest: LoadProgress = { phase: 'manifest', file: 'manifest.json', loaded: 1, total: 1 };
    const download: LoadProgress = { phase: 'download', file: 'decoder.onnx', loaded: 100, total: 100 };
    const skipped: LoadProgress = { phase: 'warmup', loaded: 0, total: 0, skipped: 'no shaders to compile on WASM' };

    // WASM: the engine says right after choosing the backend that the warm-up will not run.
    const half = await midLoad([manifest, skipped, download, { phase: 'upload', loaded: 4, total: 8 }]);
    expect(half.state.loadPhase).toBe('upload');
    expect(pageStatus(half.state)).toBe('Loading model (upload to gpu)');
    expect(half.state.loadPhases.warmup).toEqual(skipped);
    expect(loadPercent(half.state)).toBe(83); // (2 + 4/8) of 3 phases
    const full = await midLoad([manifest, skipped, download, { phase: 'upload', loaded: 8, total: 8 }]);
    expect(loadPercent(full.state)).toBe(100);
    expect(full.after.modelStatus).toBe('ready');

    // WebGPU: the warm-up is still to come after the upload, and counts.
    const gpu = await midLoad([manifest, download, { phase: 'upload', loaded: 8, total: 8 }]);
    expect(loadPercent(gpu.state)).toBe(75);
    expect(gpu.state.loadPhases.warmup).toBeUndefined();
  });

  it('a run passes through every scale, then refining, then done, and lands in the gallery', async () => {
    const { store, encoded } = await loaded();
    store.getState().setPrompt('a red circle');
    const statuses: string[] = [];
    const fractions: number[] = [];
    const unsubscribe = store.subscribe((s: AppState) => {
      const text = statusText(s.run);
      if (statuses[statuses.length - 1] !== text) statuses.push(text);
      fractions.push(progressFraction(s.run));
    });
    await store.getState().generate();
    unsubscribe();
    const state = store.getState();
    expect(statuses.filter((s) => s.startsWith('Scale'))).toEqual(['Scale 1 of 3', 'Scale 2 of 3', 'Scale 3 of 3']);
    expect(statuses).toContain('Refining');
    expect(statuses[statuses.length - 1]).toMatch(/^Done in \d+\.\d s$/);
    // The bar never moves backwards and ends full.
    for (let i = 1; i < fractions.length; i++) expect(fractions[i]).toBeGreaterThanOrEqual(fractions[i - 1]);
    expect(fractions[fractions.length - 1]).toBe(1);
    // One preview per scale, then the final image.
    expect(state.frames.map((f) => f.label)).toEqual(['1×1', '2×2', '4×4', 'Final']);
    expect(state.firstPreviewMs).toBeGreaterThanOrEqual(0);
    expect(state.gallery).toHaveLength(1);
    expect(state.gallery[0]).toMatchObject({ prompt: 'a red circle', seed: 1001, model: 'fake-shapes', backend: 'wasm' });
    expect(encoded[0]).toMatchObject({ prompt: 'a red circle', seed: '1001', model: 'fake-shapes' });
    expect(JSON.parse(encoded[0].settings)).toEqual(state.settings);
  });

  it('random seeds change per run; a fixed seed and "reuse" repeat one', async () => {
    const { store, fake } = await loaded();
    store.getState().setPrompt('a red circle');
    await store.getState().generate();
    await store.getState().generate();
    expect(fake.requests.map((r) => r.seed)).toEqual([1001, 1002]);
    store.getState().reuseSeed();
    expect(store.getState().randomSeed).toBe(false);
    await store.getState().generate();
    store.getState().setSeed(42);
    await store.getState().generate();
    expect(fake.requests.map((r) => r.seed)).toEqual([1001, 1002, 1002, 42]);
  });

  it('passes the settings through and clamps impossible values', async () => {
    const { store, fake } = await loaded();
    store.getState().setPrompt('a red circle');
    store.getState().setSetting('topK', -3);
    store.getState().setSetting('topP', 1.7);
    store.getState().setSetting('temperature', 0);
    store.getState().setSetting('residual', false);
    store.getState().setSeed(5);
    await store.getState().generate();
    expect(fake.requests[0].settings).toMatchObject({ topK: 0, topP: 1, temperature: 0.05, residual: false });
    // Without residual diffusion there is no refining step.
    expect(store.getState().run.stepCount).toBe(0);
  });

  it('several images use consecutive seeds and each is kept', async () => {
    const { store, fake } = await loaded();
    store.getState().setPrompt('a red circle');
    store.getState().setSeed(10);
    store.getState().setCount(3);
    await store.getState().generate();
    expect(fake.requests.map((r) => r.seed)).toEqual([10, 11, 12]);
    expect(store.getState().gallery.map((g) => g.seed)).toEqual([12, 11, 10]);
    expect(statusText(store.getState().run)).toMatch(/^Done in/);
  });

  it('cancel stops at once and the next generate works', async () => {
    const { store, fake } = await loaded({ stepMs: 5 });
    store.getState().setPrompt('a red circle');
    const first = store.getState().generate();
    await new Promise((r) => setTimeout(r, 8));
    await store.getState().cancel();
    expect(statusText(store.getState().run)).toBe('Cancelled');
    await first;
    expect(store.getState().gallery).toHaveLength(0);
    await store.getState().generate();
    expect(statusText(store.getState().run)).toMatch(/^Done in/);
    expect(store.getState().gallery).toHaveLength(1);
    expect(fake.maxConcurrent).toBe(1);
  });

  it('a Generate during a run replaces it', async () => {
    const { store, fake } = await loaded({ stepMs: 5 });
    store.getState().setPrompt('a red circle');
    const first = store.getState().generate();
    await new Promise((r) => setTimeout(r, 3));
    store.getState().setPrompt('a blue square');
    const second = store.getState().generate();
    await Promise.all([first, second]);
    const state = store.getState();
    expect(state.gallery.map((g) => g.prompt)).toEqual(['a blue square']);
    expect(state.runError).toBeUndefined();
    expect(fake.maxConcurrent).toBe(1);
  });

  it('refuses an empty prompt with a sentence, without calling the engine', async () => {
    const { store, fake } = await loaded();
    store.getState().setPrompt('   ');
    await store.getState().generate();
    expect(store.getState().runError?.message).toMatch(/Type a prompt/);
    expect(fake.requests).toHaveLength(0);
  });

  it('points out unknown words after typing', async () => {
    const { store } = await loaded();
    store.getState().setPrompt('a purple circle');
    await new Promise((r) => setTimeout(r, 5));
    expect(store.getState().analysis?.unknown).toEqual(['purple']);
  });

  it('the timeline can be scrubbed after a run', async () => {
    const { store } = await loaded();
    store.getState().setPrompt('a red circle');
    await store.getState().generate();
    store.getState().selectFrame(1);
    expect(store.getState().selectedFrame).toBe(1);
    store.getState().selectFrame(99);
    expect(store.getState().selectedFrame).toBe(1);
    store.getState().selectFrame(null);
    expect(store.getState().selectedFrame).toBeNull();
  });

  it('re-run restores prompt, seed and settings; delete removes the entry', async () => {
    const { store, fake } = await loaded();
    store.getState().setPrompt('a red circle');
    store.getState().setSetting('cfg', 7);
    await store.getState().generate();
    const kept = store.getState().gallery[0];
    store.getState().setPrompt('something else');
    store.getState().setSetting('cfg', 1);
    await store.getState().rerun(kept.id);
    expect(fake.requests[1]).toMatchObject({ prompt: 'a red circle', seed: kept.seed });
    expect(fake.requests[1].settings?.cfg).toBe(7);
    expect(store.getState().gallery).toHaveLength(2);
    await store.getState().deleteEntry(kept.id);
    expect(store.getState().gallery.map((g) => g.id)).not.toContain(kept.id);
  });

  it('re-run restores the negative and detail prompts too; vary refuses without an image of the loaded model', async () => {
    const { store, fake } = await loaded();
    await store.getState().vary(2);
    expect(store.getState().runError?.message).toMatch(/no image of this model to vary/);
    expect(fake.requests).toHaveLength(0);
    store.getState().setPrompt('a red circle');
    store.getState().setNegativePrompt('a green square');
    store.getState().setDetailPrompt('a blue circle');
    store.getState().setDetailFrom(2);
    await store.getState().generate();
    const kept = store.getState().gallery[0];
    expect(kept.tokens?.maps).toHaveLength(3);
    store.getState().setNegativePrompt('');
    store.getState().setDetailPrompt('');
    await store.getState().rerun(kept.id);
    expect(fake.requests[1]).toMatchObject({ prompt: 'a red circle', negativePrompt: 'a green square', detailPrompt: 'a blue circle', detailFrom: 2, seed: kept.seed });
    expect(store.getState()).toMatchObject({ negativePrompt: 'a green square', detailPrompt: 'a blue circle', detailFrom: 2 });
  });

  it('a crashed worker is reported and the model is loaded again', async () => {
    const harness = await loaded();
    expect(harness.loads).toBe(1);
    harness.crash({ code: 'worker-crashed', message: 'The image engine stopped unexpectedly.' });
    expect(harness.store.getState().runError?.code).toBe('worker-crashed');
    expect(harness.store.getState().modelStatus).toBe('loading');
    await new Promise((r) => setTimeout(r, 5));
    expect(harness.loads).toBe(2);
    expect(harness.store.getState().modelStatus).toBe('ready');
  });

  it('a worker that was not restarted leaves the model unloaded instead of looping', async () => {
    const harness = await loaded();
    harness.crash({ code: 'worker-crashed', message: 'It failed again right after a restart.' }, false);
    await new Promise((r) => setTimeout(r, 5));
    expect(harness.loads).toBe(1);
    expect(harness.store.getState().modelStatus).toBe('error');
    expect(harness.store.getState().runError?.message).toMatch(/failed again/);
  });

  it('events that arrive after the result do not undo "Done"', async () => {
    const harness = await loaded();
    const { store } = harness;
    const late: Array<() => void> = [];
    const client = harness.client;
    const generate = client.generate;
    // Deliver every event only after the result, as two message ports may do.
    client.generate = async (request, onEvent) => {
      const result = await generate(request, (event) => late.push(() => onEvent?.(event)));
      setTimeout(() => late.forEach((deliver) => deliver()), 0);
      return result;
    };
    store.getState().setPrompt('a red circle');
    await store.getState().generate();
    await new Promise((r) => setTimeout(r, 10));
    expect(late.length).toBeGreaterThan(3);
    expect(statusText(store.getState().run)).toMatch(/^Done in/);
  });

  it('a failed load is shown as an error with the engine message', async () => {
    const failure = { code: 'fetch-failed' as const, message: 'transformer.onnx: HTTP 404 Not Found' };
    const { store } = createHarness({ failLoad: failure });
    await store.getState().loadModel({ kind: 'url', url: 'http://x/missing/' }, 'missing');
    expect(store.getState().modelStatus).toBe('error');
    expect(store.getState().modelError).toEqual({ code: 'fetch-failed', message: 'missing: transformer.onnx: HTTP 404 Not Found' });
    await store.getState().generate();
    expect(store.getState().runError?.message).toMatch(/not loaded/);
  });

  it('a failed load of another model keeps the loaded one usable and names the URL and the cause', async () => {
    const harness = await loaded();
    const { store, client } = harness;
    const load = client.load;
    client.load = async (source, options, onProgress) => {
      if (source.kind === 'url' && source.url.includes('missing')) {
        throw { code: 'fetch-failed', message: 'manifest.json: HTTP 404 Not Found' };
      }
      return load(source, options, onProgress);
    };
    const pending = store.getState().loadModel({ kind: 'url', url: 'http://localhost/missing/' }, '/missing/');
    expect(store.getState().modelStatus).toBe('loading');
    expect(store.getState().modelInfo).toBeDefined();
    await pending;
    const state = store.getState();
    expect(state.modelStatus).toBe('ready');
    expect(state.modelLabel).toBe('fake');
    expect(state.modelSource).toEqual({ kind: 'url', url: 'http://localhost/models/fake/' });
    expect(state.modelError?.message).toBe('/missing/: manifest.json: HTTP 404 Not Found');
    expect(pageStatus(state)).not.toBe('Model not loaded');
    state.setPrompt('a red circle');
    await store.getState().generate();
    expect(statusText(store.getState().run)).toMatch(/^Done in/);
    expect(store.getState().runError).toBeUndefined();
  });

  it('a typed model address is taken like ?model=: relative paths load, javascript: is refused', async () => {
    const harness = await loaded();
    const { store } = harness;
    const href = 'http://127.0.0.1:5173/?backend=wasm';
    await store.getState().loadModelUrl('javascript:alert(1)', href);
    expect(harness.loads).toBe(1);
    expect(store.getState().modelStatus).toBe('ready');
    expect(store.getState().modelError?.message).toMatch(/"javascript:alert\(1\)" is not an http\(s\) address/);
    await store.getState().loadModelUrl('/models/hart-shapes/manifest.json', href);
    expect(harness.loads).toBe(2);
    expect(store.getState().modelError).toBeUndefined();
    expect(store.getState().modelSource).toEqual({ kind: 'url', url: 'http://127.0.0.1:5173/models/hart-shapes/' });
    expect(store.getState().modelLabel).toBe('/models/hart-shapes/');
  });

  it('says Done only after the gallery write resolved, so a reload at "Done in" finds the image', async () => {
    const memory = createMemoryGalleryStorage();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let stored = false;
    const galleryStorage = {
      ...memory,
      async put(entry: Parameters<typeof memory.put>[0]) {
        await held;
        await memory.put(entry);
        stored = true;
      },
    };
    const { store } = await loaded({ galleryStorage });
    store.getState().setPrompt('a red circle');
    const doneWhileStored: boolean[] = [];
    store.subscribe((s) => {
      if (s.run.phase === 'done') doneWhileStored.push(stored);
    });
    const run = store.getState().generate();
    await vi.waitFor(() => expect(store.getState().frames.some((f) => f.final)).toBe(true));
    await new Promise((r) => setTimeout(r, 20));
    expect(store.getState().run.phase).not.toBe('done');
    release();
    await run;
    expect(store.getState().run.phase).toBe('done');
    expect(doneWhileStored.length).toBeGreaterThan(0);
    expect(doneWhileStored.every(Boolean)).toBe(true);
    expect((await memory.list()).length).toBe(1);
  });

  it('cancelLoad stops loading another model and leaves the loaded one usable', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const harness = await loaded({ holdSource: (source) => (source.kind === 'url' && source.url.includes('slow') ? held : undefined) });
    const { store } = harness;
    const pending = store.getState().loadModel({ kind: 'url', url: 'http://localhost/slow/' }, '/slow/');
    expect(store.getState().modelStatus).toBe('loading');
    await store.getState().cancelLoad();
    expect(store.getState().modelStatus).toBe('ready');
    expect(store.getState().modelError).toBeUndefined();
    release();
    await pending;
    expect(store.getState().modelStatus).toBe('ready');
    expect(store.getState().modelLabel).toBe('fake');
    store.getState().setPrompt('a red circle');
    await store.getState().generate();
    expect(statusText(store.getState().run)).toMatch(/^Done in/);
  });
});
