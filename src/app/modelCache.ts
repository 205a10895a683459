// The browser's copy of downloaded model packages (Cache Storage) and the storage they live in,
// as the store sees them. The engine's functions need no onnxruntime, so they run on the page
// itself, not in the worker.
import { deleteCachedModel, estimateStorage, listCachedModels, packageBaseUrl, persistStorage, type CachedModel } from '../engine/index';

export type { CachedModel };

export interface StorageEstimate {
  quota?: number;
  usage?: number;
}

/** What the store needs to list, delete and keep downloaded models; injected so tests fake it. */
export interface ModelCache {
  list(): Promise<CachedModel[]>;
  /** Resolves to the bytes freed. */
  delete(baseUrl: string): Promise<number>;
  /** True: the browser will not evict the cache; false: it declined; undefined: cannot ask. */
  persist(): Promise<boolean | undefined>;
  estimate(): Promise<StorageEstimate | undefined>;
}

export const browserModelCache: ModelCache = {
  list: () => listCachedModels(),
  delete: (baseUrl) => deleteCachedModel(baseUrl),
  persist: () => persistStorage(),
  estimate: () => estimateStorage(),
};

/** The package folder a model URL is cached under, as `CachedModel.baseUrl` spells it. */
export function cacheBaseUrl(url: string): string | undefined {
  try {
    return packageBaseUrl(url).href;
  } catch {
    return undefined;
  }
}
