// A WebGPU device lost during a run (driver reset, GPU out of memory, a laptop switching GPUs):
// the store asks for a fresh worker, loads the model again (WebGPU, else WASM, saying why in the
// badge's reason) and the next Generate works without reloading the page.
import { describe, expect, it, vi } from 'vitest';
import type { AppFailure } from '../../workers/protocol';
import type { BackendInfo } from '../../src/engine/types';
import { statusText } from '../../src/app/runStatus';
import { createHarness } from './storeHarness';

const LOST: AppFailure = { code: 'device-lost', message: 'The GPU stopped working (its WebGPU device was lost: destroyed); the model must be loaded again.' };
const GPU: BackendInfo = { backend: 'webgpu', fp16: false, reason: 'WebGPU on a test adapter.' };
const WASM: BackendInfo = { backend: 'wasm', fp16: false, reason: 'WASM was requested.' };

/** A store on WebGPU whose first `losses` runs fail with a lost device; `gpuAfterLoss`: can WebGPU start again. */
async function onGpu({ losses = 1, gpuAfterLoss = true } = {}) {
  const harness = createHarness();
  const { client, store } = harness;
  const { load, generate } = client;
  const asked: string[] = [];
  client.load = async (source, options, onProgress) => {
    asked.push(options.backend);
    const info = await load(source, options, onProgress);
    if (options.backend === 'wasm') return { ...info, backend: WASM };
    if (harness.restarts > 0 && !gpuAfterLoss) throw { code: 'no-backend', message: 'WebGPU was requested but no WebGPU adapter is available.' };
    return { ...info, backend: GPU };
  };
  let lose = losses;
  client.generate = async (request, onEvent) => {
    if (lose > 0) {
      lose--;
      throw LOST;
    }
    return generate(request, onEvent);
  };
  store.setState({ backendChoice: 'webgpu' });
  await store.getState().loadModel({ kind: 'url', url: 'http://localhost/models/fake/' }, 'fake');
  store.getState().setPrompt('a red circle');
  return { harness, store, asked };
}

describe('a lost WebGPU device', () => {
  it('is reported, the model loads again in a fresh worker on WebGPU, and the next Generate works', async () => {
    const { harness, store, asked } = await onGpu();
    await store.getState().generate();
    expect(store.getState().runError).toEqual({ code: 'device-lost', message: expect.stringMatching(/WebGPU device was lost.*Loading it again/) });
    expect(harness.restarts).toBe(1);
    await vi.waitFor(() => expect(store.getState().modelStatus).toBe('ready'));
    expect(asked).toEqual(['webgpu', 'webgpu']);
    expect(store.getState().modelInfo?.backend).toEqual(GPU);
    await vi.waitFor(() => expect(store.getState().runError?.message).toMatch(/WebGPU device was lost.*It was loaded again on WebGPU; Generate works\.$/));
    await store.getState().generate();
    expect(statusText(store.getState().run)).toMatch(/^Done in/);
    expect(store.getState().runError).toBeUndefined();
    expect(store.getState().gallery).toHaveLength(1);
  });

  it('falls back to WASM when WebGPU cannot start again, and the badge says why', async () => {
    const { harness, store, asked } = await onGpu({ gpuAfterLoss: false });
    await store.getState().generate();
    await vi.waitFor(() => expect(store.getState().modelInfo?.backend.backend).toBe('wasm'));
    expect(asked).toEqual(['webgpu', 'webgpu', 'wasm']);
    expect(harness.restarts).toBe(1);
    expect(store.getState().modelStatus).toBe('ready');
    expect(store.getState().modelError).toBeUndefined();
    expect(store.getState().modelInfo?.backend.reason).toMatch(/^WASM, because the GPU's WebGPU device was lost and could not be started again \(.*no WebGPU adapter/);
    await vi.waitFor(() => expect(store.getState().runError?.message).toMatch(/It was loaded again on WASM; Generate works\.$/));
    await store.getState().generate();
    expect(statusText(store.getState().run)).toMatch(/^Done in/);
    expect(store.getState().gallery).toHaveLength(1);
  });

  it('goes on with WASM when the device is lost a second time', async () => {
    const { harness, store, asked } = await onGpu({ losses: 2 });
    await store.getState().generate();
    await vi.waitFor(() => expect(store.getState().modelInfo?.backend.backend).toBe('webgpu'));
    await store.getState().generate();
    await vi.waitFor(() => expect(store.getState().modelInfo?.backend.backend).toBe('wasm'));
    expect(asked).toEqual(['webgpu', 'webgpu', 'wasm']);
    expect(harness.restarts).toBe(2);
    expect(store.getState().modelInfo?.backend.reason).toBe("WASM, because the GPU's WebGPU device was lost again.");
    await store.getState().generate();
    expect(statusText(store.getState().run)).toMatch(/^Done in/);
  });
});
