// The page's handle on the engine worker: comlink calls that fail as AppFailure, and a worker
// that is replaced by a fresh one when it dies (the store then reloads the model into it).
import * as Comlink from 'comlink';
import { toAppFailure, type AppFailure, type WorkerApi } from './protocol';

export interface EngineClient extends WorkerApi {
  /** Listens for worker deaths; a fresh worker (without a model) is already in place. */
  onCrash(listener: (failure: AppFailure) => void): () => void;
  dispose(): void;
}

/** Structurally what we need from a Worker, so tests can pass a stand-in. */
export interface WorkerLike {
  addEventListener(type: 'error' | 'messageerror', listener: (event: Event) => void): void;
  terminate(): void;
}

export function createEngineClient(
  makeWorker: () => WorkerLike,
  connect: (worker: WorkerLike) => WorkerApi = (worker) => Comlink.wrap<WorkerApi>(worker as unknown as Worker) as unknown as WorkerApi,
): EngineClient {
  const listeners = new Set<(failure: AppFailure) => void>();
  let worker: WorkerLike;
  let remote: WorkerApi;
  // Calls in flight on the current worker reject through this when it dies; comlink would
  // otherwise leave them pending forever.
  let rejectInFlight: (failure: AppFailure) => void = () => {};
  let died: Promise<never>;

  function start(): void {
    worker = makeWorker();
    remote = connect(worker);
    died = new Promise<never>((_, reject) => {
      rejectInFlight = reject;
    });
    died.catch(() => undefined);
    const current = worker;
    const onDeath = (event: Event) => {
      if (current !== worker) return;
      const detail = (event as ErrorEvent).message;
      const failure: AppFailure = {
        code: 'worker-crashed',
        message: `The image engine stopped unexpectedly${detail ? ` (${detail})` : ''}. It was restarted; the model is loading again.`,
      };
      rejectInFlight(failure);
      current.terminate();
      start();
      for (const listener of listeners) listener(failure);
    };
    worker.addEventListener('error', onDeath);
    worker.addEventListener('messageerror', onDeath);
  }

  async function call<T>(invoke: (api: WorkerApi) => Promise<T>): Promise<T> {
    try {
      return await Promise.race([invoke(remote), died]);
    } catch (error) {
      throw toAppFailure(error);
    }
  }

  start();

  return {
    load: (source, options, onProgress) =>
      call((api) => api.load(source, options, onProgress && Comlink.proxy(onProgress))),
    generate: (request, onEvent) => call((api) => api.generate(request, onEvent && Comlink.proxy(onEvent))),
    cancel: () => call((api) => api.cancel()),
    analyzePrompt: (prompt) => call((api) => api.analyzePrompt(prompt)),
    onCrash(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    dispose() {
      listeners.clear();
      worker.terminate();
    },
  };
}
