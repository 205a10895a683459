// Downloaded models: which packages this browser keeps, how much room they take, deleting one,
// and asking once that the browser not evict them.
import { formatBytes } from './selectors';
import { browserModelCache, cacheBaseUrl } from './modelCache';
import type { AppDeps, AppState, CacheSlice, Slice } from './storeTypes';

export function createCacheSlice(deps: AppDeps): Slice<CacheSlice> {
  const cache = deps.cache ?? browserModelCache;
  // Only the newest listing may write; one started before a delete would bring the model back.
  let refreshId = 0;
  let persistAsked = false;

  return (set, get) => ({
    cachedModels: [],
    cacheListed: false,
    async refreshCachedModels() {
      const id = ++refreshId;
      try {
        const [models, estimate] = await Promise.all([cache.list(), cache.estimate()]);
        if (id !== refreshId) return;
        set({ cachedModels: models, cacheListed: true, storageEstimate: estimate, cacheError: undefined });
      } catch (error) {
        if (id !== refreshId) return;
        set({ cacheListed: true, cacheError: `Downloaded models could not be listed: ${(error as Error).message}` });
      }
    },
    async deleteCachedModel(baseUrl) {
      const model = get().cachedModels.find((m) => m.baseUrl === baseUrl);
      const name = model?.name ?? baseUrl;
      set({ deletingModel: baseUrl, cacheNotice: undefined, cacheError: undefined });
      try {
        const freed = await cache.delete(baseUrl);
        // The worker holds the weights in memory: deleting the download does not unload it.
        const inUse = loadedBaseUrl(get()) === baseUrl;
        set({
          cacheNotice: `Deleted ${name} (${formatBytes(freed)} freed).${inUse ? ' It stays loaded for this visit; the next visit downloads it again.' : ''}`,
        });
      } catch (error) {
        set({ cacheError: `${name} could not be deleted: ${(error as Error).message}` });
      } finally {
        set({ deletingModel: undefined });
      }
      await get().refreshCachedModels();
    },
    async persistStorage() {
      if (persistAsked) return;
      persistAsked = true;
      // A browser that declines or cannot be asked is not an error worth showing.
      const persistent = await cache.persist().catch(() => undefined);
      if (persistent === true) set({ storagePersistent: true });
    },
  });
}

/** The cache folder of the model loaded from a URL, if one is loaded. */
export function loadedBaseUrl(state: Pick<AppState, 'modelSource' | 'modelInfo'>): string | undefined {
  const source = state.modelSource;
  if (!state.modelInfo || source?.kind !== 'url') return undefined;
  return cacheBaseUrl(source.url);
}
