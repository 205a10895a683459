// The app store: the slices combined, plus the reaction to a crashed worker (reload the model
// into the fresh one, and say so).
import { createStore, type StoreApi } from 'zustand/vanilla';
import { createCacheSlice } from './cacheSlice';
import { createCatalogSlice } from './catalogSlice';
import { createGallerySlice } from './gallerySlice';
import { createModelSlice } from './modelSlice';
import type { BackendChoice } from '../../workers/protocol';
import { createRunSlice } from './runSlice';
import { createSettingsSlice } from './settingsSlice';
import type { AppDeps, AppState } from './storeTypes';

export type AppStore = StoreApi<AppState>;

export function createAppStore(deps: AppDeps, backendChoice: BackendChoice = 'auto'): AppStore {
  const store = createStore<AppState>()((...args) => ({
    ...createModelSlice(deps, backendChoice)(...args),
    ...createSettingsSlice(deps)(...args),
    ...createRunSlice(deps)(...args),
    ...createGallerySlice(deps)(...args),
    ...createCacheSlice(deps)(...args),
    ...createCatalogSlice(deps)(...args),
  }));

  // A model that just loaded was just downloaded: list it, and ask that it be kept.
  store.subscribe((state, previous) => {
    if (state.modelStatus !== 'ready' || previous.modelStatus === 'ready') return;
    void state.persistStorage();
    void state.refreshCachedModels();
  });
  void store.getState().refreshCachedModels();
  void store.getState().loadCatalog();

  deps.client.onCrash((failure, restarted) => {
    const { modelSource, modelLabel, run } = store.getState();
    const wasRunning = run.phase === 'starting' || run.phase === 'scales' || run.phase === 'refining';
    store.setState({
      runError: failure,
      run: wasRunning ? { ...run, phase: 'error' } : run,
    });
    if (!restarted) {
      store.setState({ modelStatus: 'error', modelInfo: undefined });
      return;
    }
    // The fresh worker holds no model: nothing is usable until the reload is done.
    store.setState({ modelInfo: undefined });
    if (modelSource) void store.getState().loadModel(modelSource, modelLabel);
  });

  return store;
}
