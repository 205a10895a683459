// The worker's state: one engine, one queue, one AbortController per run.
// Kept free of comlink and onnxruntime so it can be tested in Node with a fake engine.
import { BadInputError, EngineError, LOADING_CANCELLED, RunQueue, throwIfCancelled, type Engine, type GenerateEvent, type GenerateRequest, type ImportModelProgress, type LoadProgress } from '../src/engine/index';
import { toAppFailure, type ImportOutcome, type ImportRequest, type ModelSource, type WorkerImportOptions, type WorkerLoadOptions, type WorkerApi } from './protocol';

export type OpenEngine = (
  source: ModelSource,
  options: WorkerLoadOptions & { onProgress?: (progress: LoadProgress) => void; signal: AbortSignal },
) => Promise<Engine>;

export type CheckNeeds = WorkerApi['checkNeeds'];

export type ImportModel = (
  request: ImportRequest,
  options: WorkerImportOptions & { onProgress?: (progress: ImportModelProgress) => void; signal: AbortSignal },
) => Promise<Omit<ImportOutcome, 'seconds'>>;

/** Hosts without onnxruntime and storage (tests of loading and running) cannot import. */
const noImport: ImportModel = async () => {
  throw new EngineError('internal', 'This engine host cannot import a model.');
};

/** Hosts without the runtime facts (tests of loading and running) cannot answer checkNeeds. */
const noNeedsCheck: CheckNeeds = async () => {
  throw new EngineError('internal', 'This engine host cannot check a device.');
};

export function createEngineHost(openEngine: OpenEngine, checkNeeds: CheckNeeds = noNeedsCheck, importModel: ImportModel = noImport): WorkerApi {
  let engine: Engine | undefined;
  // Every load and generate runs after the previous one settled: onnxruntime's WebGPU EP
  // corrupts its state when two session runs overlap. Its own queue, not the engine's shared one
  // (which the sessions' runs inside these jobs wait on).
  const jobs = new RunQueue();
  let running: AbortController | undefined;
  let loading: AbortController | undefined;
  let importing: AbortController | undefined;

  async function rethrowAsFailure<T>(promise: Promise<T>): Promise<T> {
    try {
      return await promise;
    } catch (error) {
      throw toAppFailure(error);
    }
  }

  function requireEngine(): Engine {
    if (!engine) throw new BadInputError('No model is loaded yet.');
    return engine;
  }

  return {
    load(source, options, onProgress) {
      // A new model replaces the old one: stop its run (the load waits for it) and any older load.
      running?.abort();
      loading?.abort();
      const controller = new AbortController();
      loading = controller;
      return rethrowAsFailure(
        jobs.enqueue(async () => {
          // The new engine loads beside the old one; the old one is dropped only once the new
          // one is ready, so a load that fails (or is replaced) leaves the old one usable.
          const next = await openEngine(source, { ...options, onProgress, signal: controller.signal });
          if (controller.signal.aborted) {
            await next.dispose();
            throwIfCancelled(controller.signal, LOADING_CANCELLED);
          }
          const previous = engine;
          engine = next;
          await previous?.dispose();
          return next.info;
        }).finally(() => {
          if (loading === controller) loading = undefined;
        }),
      );
    },

    generate(request: GenerateRequest, onEvent?: (event: GenerateEvent) => void) {
      // A new request replaces the running one: cancel it, then queue behind it.
      running?.abort();
      const controller = new AbortController();
      running = controller;
      return rethrowAsFailure(
        jobs.enqueue(() => {
          throwIfCancelled(controller.signal);
          return requireEngine().generate(request, { signal: controller.signal, onEvent });
        }).finally(() => {
          if (running === controller) running = undefined;
        }),
      );
    },

    async cancel() {
      running?.abort();
    },

    async cancelLoad() {
      loading?.abort();
      importing?.abort();
    },

    importModel(request, options, onProgress) {
      // Not queued behind runs: the import writes the cache while the loaded model generates.
      // One import at a time: a new one stops the older.
      importing?.abort();
      const controller = new AbortController();
      importing = controller;
      const started = Date.now();
      return rethrowAsFailure(
        importModel(request, { ...options, onProgress, signal: controller.signal })
          .then((outcome) => ({ ...outcome, seconds: (Date.now() - started) / 1000 }))
          .finally(() => {
            if (importing === controller) importing = undefined;
          }),
      );
    },

    checkNeeds(needs, diskBytes, options) {
      // Reads only this machine's facts: it needs no model and waits for no run.
      return rethrowAsFailure(checkNeeds(needs, diskBytes, options));
    },

    async analyzePrompt(prompt: string) {
      try {
        return requireEngine().analyzePrompt(prompt);
      } catch (error) {
        throw toAppFailure(error);
      }
    },
  };
}
