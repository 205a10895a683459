// The page's handle on the engine worker: comlink calls that fail as AppFailure, and a worker
// that is replaced by a fresh one when it dies (the store then reloads the model into it).
import * as Comlink from 'comlink';
import { toAppFailure, type AppFailure, type WorkerApi } from '../../workers/protocol';

export type CrashListener = (failure: AppFailure, restarted: boolean) => void;

export interface EngineClient extends WorkerApi {
  /**
   * Listens for worker deaths. `restarted`: a fresh worker (without a model) is already in place.
   * A worker that dies again before any call succeeded (e.g. its script cannot load) is not
   * restarted in a loop; the next call starts one.
   */
  onCrash(listener: CrashListener): () => void;
  /**
   * Replaces the worker with a fresh one (without a model): after a lost GPU device, whose
   * onnxruntime keeps the dead device, only a fresh worker gets a new one. Calls in flight on
   * the old worker reject with `failure`.
   */
  restart(failure: AppFailure): void;
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
  const listeners = new Set<CrashListener>();
  let worker: WorkerLike | undefined;
  let remote: WorkerApi;
  // Calls in flight on the current worker reject through this when it dies; comlink would
  // otherwise leave them pending forever.
  let rejectInFlight: (failure: AppFailure) => void = () => {};
  let died: Promise<never>;
  // Deaths since the last call that succeeded.
  let crashStreak = 0;

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
      const cause = `The image engine stopped unexpectedly${detail ? ` (${detail})` : ''}.`;
      const restart = ++crashStreak === 1;
      const failure: AppFailure = {
        code: 'worker-crashed',
        message: restart
          ? `${cause} It was restarted; the model is loading again.`
          : `${cause} It failed again right after a restart, so it was left stopped: check the connection, then load the model again or reload the page.`,
      };
      rejectInFlight(failure);
      current.terminate();
      worker = undefined;
      if (restart) start();
      for (const listener of listeners) listener(failure, restart);
    };
    worker.addEventListener('error', onDeath);
    worker.addEventListener('messageerror', onDeath);
  }

  async function call<T>(invoke: (api: WorkerApi) => Promise<T>): Promise<T> {
    if (!worker) start();
    try {
      const result = await Promise.race([invoke(remote), died]);
      crashStreak = 0;
      return result;
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
    cancelLoad: () => call((api) => api.cancelLoad()),
    analyzePrompt: (prompt) => call((api) => api.analyzePrompt(prompt)),
    checkNeeds: (needs, diskBytes, options) => call((api) => api.checkNeeds(needs, diskBytes, options)),
    importModel: (request, options, onProgress) => call((api) => api.importModel(request, options, onProgress && Comlink.proxy(onProgress))),
    restart(failure) {
      rejectInFlight(failure);
      worker?.terminate();
      crashStreak = 0;
      start();
    },
    onCrash(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    dispose() {
      listeners.clear();
      worker?.terminate();
      worker = undefined;
    },
  };
}
