import { describe, expect, it } from 'vitest';
import { chooseBackend, isSoftwareAdapter, limitWasmThreads, type AdapterLike, type Ort } from '../../src/engine/backend';
import { RunQueue } from '../../src/engine/queue';

const webOrt = { env: { versions: { common: '1.30.0', web: '1.30.0' } } } as unknown as Ort;
const nodeOrt = { env: { versions: { common: '1.30.0', node: '1.30.0' } } } as unknown as Ort;

function adapter(features: string[], info: AdapterLike['info']): AdapterLike {
  return { features: new Set(features), info };
}
const gpuWith = (a: AdapterLike | null) => ({ requestAdapter: async () => a });
const swiftshader = adapter([], { vendor: 'google', architecture: 'swiftshader', isFallbackAdapter: true });
const hardware = adapter(['shader-f16'], { vendor: 'nvidia', architecture: 'ampere', isFallbackAdapter: false });

describe('backend choice', () => {
  it('uses the CPU with onnxruntime-node and refuses web backends there', async () => {
    expect((await chooseBackend({ ort: nodeOrt })).backend).toBe('cpu');
    await expect(chooseBackend({ ort: nodeOrt, requested: 'webgpu' })).rejects.toMatchObject({ code: 'no-backend' });
    await expect(chooseBackend({ ort: webOrt, requested: 'cpu' })).rejects.toMatchObject({ code: 'no-backend' });
  });

  it('falls back to WASM without WebGPU or without an adapter, and says why', async () => {
    const none = await chooseBackend({ ort: webOrt, gpu: null });
    expect(none).toMatchObject({ backend: 'wasm', fp16: false });
    expect(none.reason).toMatch(/no WebGPU/);
    expect((await chooseBackend({ ort: webOrt, gpu: gpuWith(null) })).reason).toMatch(/no WebGPU adapter/);
    await expect(chooseBackend({ ort: webOrt, gpu: gpuWith(null), requested: 'webgpu' })).rejects.toMatchObject({ code: 'no-backend' });
  });

  it('without cross-origin isolation (no COOP/COEP), asks for one WASM thread and says so in the reason', async () => {
    const web = () => ({ env: { versions: { web: '1.30.0' }, wasm: {} as { numThreads?: number } } }) as unknown as Ort & { env: { wasm: { numThreads?: number } } };
    const plain = web();
    expect(limitWasmThreads(plain, false)).toBe(true);
    expect(plain.env.wasm.numThreads).toBe(1);
    const isolated = web();
    expect(limitWasmThreads(isolated, true)).toBe(false);
    expect(isolated.env.wasm.numThreads).toBeUndefined();
    const node = { env: { versions: { node: '1.30.0' }, wasm: {} } } as unknown as Ort & { env: { wasm: { numThreads?: number } } };
    expect(limitWasmThreads(node, false)).toBe(false);
    expect(node.env.wasm.numThreads).toBeUndefined();

    const note = 'One thread only: the page is served without the COOP/COEP headers that WASM threads need.';
    expect((await chooseBackend({ ort: webOrt, gpu: null, isolated: false })).reason).toBe(`WASM, because this browser has no WebGPU. ${note}`);
    expect((await chooseBackend({ ort: webOrt, requested: 'wasm', isolated: false })).reason).toBe(`WASM was requested. ${note}`);
    expect((await chooseBackend({ ort: webOrt, requested: 'wasm', isolated: true })).reason).toBe('WASM was requested.');
    expect((await chooseBackend({ ort: webOrt, gpu: gpuWith(hardware), isolated: false })).reason).not.toContain(note);
  });

  it('prefers WASM over a software adapter unless WebGPU is forced', async () => {
    expect(isSoftwareAdapter(swiftshader)).toBe(true);
    expect(isSoftwareAdapter(adapter([], { architecture: 'swiftshader' }))).toBe(true);
    expect(isSoftwareAdapter({ features: new Set(), isFallbackAdapter: true })).toBe(true);
    expect(isSoftwareAdapter(hardware)).toBe(false);
    const auto = await chooseBackend({ ort: webOrt, gpu: gpuWith(swiftshader) });
    expect(auto.backend).toBe('wasm');
    expect(auto.reason).toMatch(/software fallback.*slower than WASM/);
    const forced = await chooseBackend({ ort: webOrt, gpu: gpuWith(swiftshader), requested: 'webgpu' });
    expect(forced).toMatchObject({ backend: 'webgpu', fp16: false });
  });

  it('uses WebGPU on hardware, with fp16 only when shader-f16 exists', async () => {
    expect(await chooseBackend({ ort: webOrt, gpu: gpuWith(hardware) })).toMatchObject({ backend: 'webgpu', fp16: true });
    const noF16 = adapter([], { vendor: 'intel', architecture: 'gen-12lp' });
    expect(await chooseBackend({ ort: webOrt, gpu: gpuWith(noF16) })).toMatchObject({ backend: 'webgpu', fp16: false });
    expect((await chooseBackend({ ort: webOrt, gpu: gpuWith(hardware), requested: 'wasm' })).backend).toBe('wasm');
  });
});

describe('run queue', () => {
  it('never overlaps tasks and keeps going after a failure', async () => {
    const queue = new RunQueue();
    let running = 0;
    let maxRunning = 0;
    const order: number[] = [];
    const task = (i: number, fail = false) => async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 5 - i));
      order.push(i);
      running--;
      if (fail) throw new Error(`task ${i}`);
      return i;
    };
    const results = await Promise.allSettled([0, 1, 2, 3].map((i) => queue.enqueue(task(i, i === 1))));
    expect(order).toEqual([0, 1, 2, 3]);
    expect(maxRunning).toBe(1);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(queue.size).toBe(0);
  });
});

describe('device loss', () => {
  it('reports when the WebGPU device ORT created is lost', async () => {
    const { watchDeviceLoss } = await import('../../src/engine/backend');
    let lose!: (info: { message: string }) => void;
    const lost = new Promise<{ message: string }>((resolve) => (lose = resolve));
    const ort = { env: { webgpu: { device: { lost } } } } as unknown as Ort;
    const seen: string[] = [];
    watchDeviceLoss(ort, (message) => seen.push(message));
    watchDeviceLoss({ env: {} } as unknown as Ort, (message) => seen.push(`unexpected ${message}`));
    expect(seen).toEqual([]);
    lose({ message: 'out of memory' });
    await lost;
    await Promise.resolve();
    expect(seen).toEqual(['out of memory']);
  });
});
