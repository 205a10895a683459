// Which model is loaded, how far its loading got, and on which backend it runs.
import type { AppDeps, ModelSlice, Slice } from './storeTypes';
import type { BackendChoice } from '../../workers/protocol';

export function createModelSlice(deps: AppDeps, backendChoice: BackendChoice): Slice<ModelSlice> {
  // Only the newest load may write its result; an older one finishing late is ignored.
  let loadId = 0;

  return (set, get) => ({
    backendChoice,
    modelLabel: '',
    modelStatus: 'idle',
    loadPhases: {},
    async loadModel(source, label) {
      const id = ++loadId;
      set({
        modelSource: source,
        modelLabel: label,
        modelStatus: 'loading',
        // The worker drops the old engine before loading the new one: nothing is loaded now.
        modelInfo: undefined,
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
        if (id !== loadId) return;
        set({ modelStatus: 'ready', modelInfo: info, settings: { ...info.defaults } });
        void get().analyzePrompt();
      } catch (failure) {
        if (id !== loadId) return;
        set({ modelStatus: 'error', modelError: failure as ModelSlice['modelError'] });
      }
    },
  });
}
