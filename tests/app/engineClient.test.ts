import { describe, expect, it } from 'vitest';
import { createEngineClient, type WorkerLike } from '../../src/app/engineClient';
import type { AppFailure, WorkerApi } from '../../workers/protocol';

class FakeWorker extends EventTarget implements WorkerLike {
  terminated = false;
  terminate() {
    this.terminated = true;
  }
}

function hangingApi(): WorkerApi {
  const never = () => new Promise<never>(() => undefined);
  return { load: never, generate: never, cancel: async () => undefined, cancelLoad: async () => undefined, analyzePrompt: never, checkNeeds: never, importModel: never };
}

/** A client whose workers never answer; `workers` lists every worker it started. */
function clientOnHangingWorkers() {
  const workers: FakeWorker[] = [];
  const client = createEngineClient(
    () => {
      const w = new FakeWorker();
      workers.push(w);
      return w;
    },
    () => hangingApi(),
  );
  return { client, workers };
}

describe('engine client (the page side)', () => {
  it('rejects calls in flight when the worker dies, then starts a fresh worker', async () => {
    const { client, workers } = clientOnHangingWorkers();
    const crashes: AppFailure[] = [];
    client.onCrash((f) => crashes.push(f));
    const pending = client.generate({ prompt: 'a', seed: 1 });
    workers[0].dispatchEvent(Object.assign(new Event('error'), { message: 'out of memory' }));
    await expect(pending).rejects.toMatchObject({ code: 'worker-crashed' });
    expect(crashes).toHaveLength(1);
    expect(crashes[0].message).toMatch(/stopped unexpectedly \(out of memory\)/);
    expect(workers).toHaveLength(2);
    expect(workers[0].terminated).toBe(true);
    expect(workers[1].terminated).toBe(false);
    // An error event from the old worker after replacement changes nothing.
    workers[0].dispatchEvent(new Event('error'));
    expect(workers).toHaveLength(2);
  });

  it('restart replaces the worker with a fresh one, rejecting calls in flight, without reporting a crash', async () => {
    const { client, workers } = clientOnHangingWorkers();
    const crashes: AppFailure[] = [];
    client.onCrash((f) => crashes.push(f));
    const pending = client.generate({ prompt: 'a', seed: 1 });
    const lost: AppFailure = { code: 'device-lost', message: 'The GPU stopped working.' };
    client.restart(lost);
    await expect(pending).rejects.toEqual(lost);
    expect(workers).toHaveLength(2);
    expect(workers[0].terminated).toBe(true);
    expect(workers[1].terminated).toBe(false);
    // The old worker's last events are ignored; the fresh one is the one calls go to.
    workers[0].dispatchEvent(new Event('error'));
    expect(crashes).toEqual([]);
    expect(workers).toHaveLength(2);
  });

  it('does not restart in a loop when the fresh worker dies too; the next call starts one', async () => {
    const { client, workers } = clientOnHangingWorkers();
    const restarts: boolean[] = [];
    client.onCrash((_, restarted) => restarts.push(restarted));
    workers[0].dispatchEvent(new Event('error'));
    workers[1].dispatchEvent(new Event('error'));
    expect(restarts).toEqual([true, false]);
    expect(workers).toHaveLength(2);
    void client.cancel();
    expect(workers).toHaveLength(3);
  });

  it('normalizes failures thrown by the worker', async () => {
    const api: WorkerApi = {
      ...hangingApi(),
      load: async () => {
        throw { code: 'no-backend', message: 'WebGPU has no adapter on this machine.' };
      },
      analyzePrompt: async () => {
        throw new Error('weird');
      },
    };
    const client = createEngineClient(() => new FakeWorker(), () => api);
    await expect(client.load({ kind: 'url', url: 'x' }, { backend: 'webgpu' })).rejects.toEqual({
      code: 'no-backend',
      message: 'WebGPU has no adapter on this machine.',
    });
    await expect(client.analyzePrompt('a')).rejects.toEqual({
      code: 'internal',
      message: 'weird',
    });
  });
});
