// Which model is loaded, how far the loading of another got, and on which backend it runs.
// A new model is loaded beside the current one: the current one stays usable until the new one
// is ready, and stays loaded when the new one fails.
import type { AppDeps, ModelSlice, Slice } from './storeTypes';
import type { AppFailure, BackendChoice } from '../../workers/protocol';
import { resolveModelUrl, shownModelUrl } from './pageOptions';

export function createModelSlice(deps: AppDeps, backendChoice: BackendChoice): Slice<ModelSlice> {
  // Only the newest load may write its status; an older one finishing late is ignored.
  let loadId = 0;
  // Lost WebGPU devices so far: the second loss means this GPU cannot be trusted, go on with WASM.
  let deviceLosses = 0;

  return (set, get) => ({
    backendChoice,
    modelLabel: '',
    modelStatus: 'idle',
    loadPhases: {},
    async loadModel(source, label) {
      const id = ++loadId;
      set({
        pendingLabel: label,
        modelStatus: 'loading',
        modelError: undefined,
        loadPhases: {},
        loadPhase: undefined,
      });
      try {
        const info = await deps.client.load(source, { backend: get().backendChoice }, (progress) => {
          if (id !== loadId) return;
          // A skipped phase is listed as such but never becomes the phase the status line names.
          const loadPhase = progress.skipped ? get().loadPhase : progress.phase;
          set({ loadPhase, loadPhases: { ...get().loadPhases, [progress.phase]: progress } });
        });
        // The worker swapped engines even when a newer load is under way: record what it holds.
        if (id !== loadId) {
          // Cancelled too late to stop the swap (no newer load under way): this one is loaded.
          const settled = get().modelStatus !== 'loading' ? { modelStatus: 'ready' as const, modelError: undefined } : {};
          set({ modelSource: source, modelLabel: label, modelInfo: info, ...settled });
          return;
        }
        const { fallbackReason } = get();
        set({
          modelSource: source,
          modelLabel: label,
          modelInfo: fallbackReason && info.backend.backend === 'wasm' ? { ...info, backend: { ...info.backend, reason: fallbackReason } } : info,
          pendingLabel: undefined,
          modelStatus: 'ready',
          settings: { ...info.defaults },
        });
        void get().analyzePrompt();
      } catch (error) {
        if (id !== loadId) return;
        const failure = error as AppFailure;
        // The model loaded before (if any) is still in the worker and still usable.
        set({
          pendingLabel: undefined,
          modelStatus: get().modelInfo ? 'ready' : 'error',
          modelError: { code: failure.code, message: `${label}: ${failure.message}` },
          loadPhases: {},
          loadPhase: undefined,
        });
      }
    },
    async cancelLoad() {
      if (get().modelStatus !== 'loading') return;
      const label = get().pendingLabel ?? get().modelLabel;
      // The load's result, whatever it is, no longer writes the status.
      loadId++;
      const usable = Boolean(get().modelInfo);
      set({
        pendingLabel: undefined,
        modelStatus: usable ? 'ready' : 'error',
        modelError: usable ? undefined : { code: 'cancelled', message: `${label}: loading was cancelled. Load a model to generate.` },
        loadPhases: {},
        loadPhase: undefined,
      });
      try {
        await deps.client.cancelLoad();
      } catch (error) {
        set({ modelError: error as AppFailure });
      }
    },
    async recoverFromDeviceLoss(failure) {
      const { modelSource, modelLabel, modelInfo } = get();
      deviceLosses++;
      // onnxruntime keeps the dead device for the life of its worker: only a fresh worker gets a
      // new one. The fresh worker holds no model until the load below is done.
      deps.client.restart(failure);
      set({ modelInfo: undefined, modelStatus: 'loading' });
      if (!modelSource) return;
      const onGpu = modelInfo?.backend.backend === 'webgpu';
      const reload = async () => {
        await get().loadModel(modelSource, modelLabel);
        // The run's message said the model was loading again: say how that ended.
        const info = get().modelInfo;
        if (info && get().runError?.code === 'device-lost') {
          set({ runError: { code: failure.code, message: `${failure.message} It was loaded again on ${info.backend.backend === 'webgpu' ? 'WebGPU' : 'WASM'}; Generate works.` } });
        }
      };
      if (onGpu && deviceLosses === 1) {
        await reload();
        if (get().modelInfo) return;
      }
      if (!onGpu) return reload();
      const why = deviceLosses > 1 ? 'was lost again' : `was lost and could not be started again (${get().modelError?.message ?? 'no device'})`;
      set({
        backendChoice: 'wasm',
        fallbackReason: `WASM, because the GPU's WebGPU device ${why}.`,
        modelError: undefined,
      });
      await reload();
    },
    async loadModelUrl(input, pageHref) {
      let url: string;
      try {
        url = resolveModelUrl(input, pageHref);
      } catch (error) {
        set({ modelError: { code: 'bad-input', message: `${(error as Error).message}` } });
        return;
      }
      await get().loadModel({ kind: 'url', url }, shownModelUrl(url, pageHref));
    },
  });
}
