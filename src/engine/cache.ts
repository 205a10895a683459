// Cached models: what the fetch IO left in Cache Storage, grouped by package, so a UI can show
// how much each model takes and delete one. A package is known by its cached manifest
// (`<base>/manifest.json`, stored without a sha256); every other entry belongs to the package
// whose folder is the longest prefix of its URL.
import { parseManifestBytes, type Manifest } from './manifest';
import { neededFiles } from './modelPackage';
import { MODEL_CACHE_NAME, packageBaseUrl } from './readers';

export interface CachedModel {
  /** The package folder URL, ending in '/': what `deleteCachedModel` takes. */
  baseUrl: string;
  /** The manifest's `name`, when the cached manifest can be read. */
  name?: string;
  /** Cache entries of this package (the manifest included). */
  files: number;
  bytes: number;
  /**
   * True when every file one backend needs (fp32, or fp16 where the package has it) is cached
   * with the manifest's sha256: the model loads without the network.
   */
  offline: boolean;
}

export interface CacheOptions {
  /** Cache Storage; `globalThis.caches` by default. */
  caches?: CacheStorage;
  cacheName?: string;
}

function cacheStorage(options: CacheOptions): CacheStorage | undefined {
  return options.caches ?? (globalThis as { caches?: CacheStorage }).caches;
}

/** Size of a cached response: the length the fetch IO stored, else the body's size. */
async function entryBytes(response: Response): Promise<number> {
  const header = Number(response.headers.get('content-length'));
  if (Number.isFinite(header) && header > 0) return header;
  return (await response.blob()).size;
}

const MANIFEST_SUFFIX = '/manifest.json';

/** Package folder of every cache key (the longest cached-manifest folder that prefixes it). */
function groupKeys(urls: string[]): Map<string, string[]> {
  const bases = urls
    .map((u) => new URL(u))
    .filter((u) => u.search === '' && u.pathname.endsWith(MANIFEST_SUFFIX))
    .map((u) => u.href.slice(0, -'manifest.json'.length))
    .sort((a, b) => b.length - a.length);
  const groups = new Map<string, string[]>(bases.map((b) => [b, []]));
  for (const url of urls) {
    const base = bases.find((b) => url.startsWith(b));
    if (base) groups.get(base)!.push(url);
  }
  return groups;
}

async function openModelCache(options: CacheOptions): Promise<Cache | undefined> {
  const storage = cacheStorage(options);
  if (!storage) return undefined;
  const name = options.cacheName ?? MODEL_CACHE_NAME;
  // open() would create an empty store just to list it.
  if (typeof storage.has === 'function' && !(await storage.has(name))) return undefined;
  return storage.open(name);
}

/** Whether all files a backend needs are cached under the manifest's sha256. */
async function cachedOffline(cache: Cache, base: string, manifestResponse: Response | undefined): Promise<{ name?: string; offline: boolean }> {
  if (!manifestResponse) return { offline: false };
  let manifest: Manifest;
  try {
    manifest = parseManifestBytes(new Uint8Array(await manifestResponse.arrayBuffer()));
  } catch {
    return { offline: false };
  }
  const has = async (path: string) => {
    const entry = manifest.files.find((f) => f.path === path);
    if (!entry) return false;
    const key = new URL(path, base);
    key.searchParams.set('sha256', entry.sha256);
    return Boolean(await cache.match(key.href));
  };
  let offline = false;
  for (const fp16 of [false, true]) {
    const results = await Promise.all(neededFiles(manifest, fp16).map(has));
    offline ||= results.every(Boolean);
  }
  return { name: manifest.name, offline };
}

/** The models in Cache Storage, largest first. Empty when the browser has no Cache Storage. */
export async function listCachedModels(options: CacheOptions = {}): Promise<CachedModel[]> {
  const cache = await openModelCache(options);
  if (!cache) return [];
  const urls = (await cache.keys()).map((request) => request.url);
  const models: CachedModel[] = [];
  for (const [baseUrl, keys] of groupKeys(urls)) {
    let bytes = 0;
    for (const key of keys) {
      const response = await cache.match(key);
      if (response) bytes += await entryBytes(response);
    }
    const { name, offline } = await cachedOffline(cache, baseUrl, await cache.match(baseUrl + 'manifest.json'));
    models.push({ baseUrl, name, files: keys.length, bytes, offline });
  }
  return models.sort((a, b) => b.bytes - a.bytes);
}

/**
 * Deletes every cached file of the package at `baseUrl` (a folder or manifest URL, as given to
 * `loadEngine`), old versions included, and nothing of a package in a sub-folder of it.
 * Returns the number of bytes freed.
 */
export async function deleteCachedModel(baseUrl: string, options: CacheOptions = {}): Promise<number> {
  const cache = await openModelCache(options);
  if (!cache) return 0;
  const base = packageBaseUrl(baseUrl).href;
  const urls = (await cache.keys()).map((request) => request.url);
  const groups = groupKeys(urls);
  // Without a cached manifest the folder is still a valid target (e.g. a download cut short
  // before the manifest was stored): take every key under it that no other package claims.
  const claimed = new Set([...groups].filter(([b]) => b !== base).flatMap(([, keys]) => keys));
  const mine = groups.get(base) ?? urls.filter((u) => u.startsWith(base) && !claimed.has(u));
  let freed = 0;
  for (const key of mine) {
    const response = await cache.match(key);
    if (response) freed += await entryBytes(response);
    await cache.delete(key);
  }
  return freed;
}

/** The part of `navigator.storage` the engine uses (injectable for tests). */
export interface StorageManagerLike {
  estimate?(): Promise<{ quota?: number; usage?: number }>;
  persist?(): Promise<boolean>;
  persisted?(): Promise<boolean>;
}

function defaultStorageManager(): StorageManagerLike | undefined {
  return (globalThis as { navigator?: { storage?: StorageManagerLike } }).navigator?.storage;
}

/**
 * Asks the browser not to evict the cached models under storage pressure. Returns true when
 * storage is (now) persistent, false when the browser declined, undefined when it has no
 * StorageManager. Browsers may prompt the user or decide from site engagement.
 */
export async function persistStorage(storage: StorageManagerLike | undefined = defaultStorageManager()): Promise<boolean | undefined> {
  if (!storage?.persist) return undefined;
  try {
    if (storage.persisted && (await storage.persisted())) return true;
    return await storage.persist();
  } catch {
    return false;
  }
}

/** `navigator.storage.estimate()`, or undefined when unavailable or failing. */
export async function estimateStorage(storage: StorageManagerLike | undefined = defaultStorageManager()): Promise<{ quota?: number; usage?: number } | undefined> {
  if (!storage?.estimate) return undefined;
  try {
    return await storage.estimate();
  } catch {
    return undefined;
  }
}
