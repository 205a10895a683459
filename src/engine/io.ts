// How the engine reads a model package: one small interface, with implementations for URLs
// (fetch, with Cache Storage for offline use and byte progress), for a folder the user picked in
// the browser, and (in io-node.ts) for a folder on disk.
import { BadPackageError, CancelledError, FetchFailedError } from './errors';
import { parseManifestBytes, type Manifest } from './manifest';
import { neededFiles } from './modelPackage';

export interface ReadOptions {
  /** Expected sha256 (lowercase hex): also the key under which a cached copy is kept. */
  sha256?: string;
  /** Expected size, for progress when the server sends no Content-Length. */
  bytes?: number;
  onProgress?: (loaded: number, total: number) => void;
  signal?: AbortSignal;
}

export interface PackageIO {
  /** Where the package is, for messages. */
  readonly location: string;
  read(path: string, options?: ReadOptions): Promise<Uint8Array>;
  /** Forgets a cached copy (after it failed verification), so the next read fetches it again. */
  evict?(path: string, sha256: string): Promise<void>;
  /**
   * True when a read of this file would need no download (a cached copy exists, and, with
   * `bytes`, its recorded size is that). Reads no file content: the copy is verified when read.
   */
  isCached?(path: string, sha256: string, bytes?: number): Promise<boolean>;
}

/** The Cache Storage store that holds downloaded package files. */
export const MODEL_CACHE_NAME = 'hart-web-models';

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError('Loading was cancelled.');
}

/** Reads a response body in chunks, reporting progress. */
async function readBody(response: Response, path: string, options: ReadOptions): Promise<Uint8Array> {
  const header = Number(response.headers.get('content-length'));
  const total = Number.isFinite(header) && header > 0 ? header : (options.bytes ?? 0);
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    options.onProgress?.(bytes.length, bytes.length);
    return bytes;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  try {
    for (;;) {
      checkAborted(options.signal);
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.length;
      options.onProgress?.(loaded, Math.max(total, loaded));
    }
  } catch (error) {
    if (error instanceof CancelledError) throw error;
    throw new FetchFailedError(path, `the download broke off after ${loaded} bytes (${(error as Error).message})`, { cause: error });
  } finally {
    reader.releaseLock();
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

export interface FetchIOOptions {
  /** Cache Storage name; null turns caching off. Default 'hart-web-models'. */
  cacheName?: string | null;
  fetch?: typeof fetch;
}

/** Resolves a package URL (absolute, or relative to the page/worker location) to a folder URL. */
export function packageBaseUrl(source: string): URL {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  const url = base ? new URL(source, base) : new URL(source);
  if (url.pathname.endsWith('/manifest.json')) url.pathname = url.pathname.slice(0, -'manifest.json'.length);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/**
 * Reads a package over HTTP. Files with a sha256 are cached under `URL?sha256=…`, so a new
 * version of a file is never mistaken for the old one; the manifest is fetched fresh and the
 * cached copy is only used when the network fails (offline use).
 */
export function createFetchIO(source: string, options: FetchIOOptions = {}): PackageIO {
  const base = packageBaseUrl(source);
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const cacheName = options.cacheName === undefined ? MODEL_CACHE_NAME : options.cacheName;
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  const openCache = async (): Promise<Cache | undefined> => {
    if (!storage || cacheName === null) return undefined;
    try {
      return await storage.open(cacheName);
    } catch {
      return undefined; // e.g. opaque origins, private modes: work without a cache
    }
  };
  const cacheKey = (url: URL, sha256?: string) => {
    const key = new URL(url);
    if (sha256) key.searchParams.set('sha256', sha256);
    return key.href;
  };

  return {
    location: base.href,

    async read(path, readOptions = {}) {
      checkAborted(readOptions.signal);
      const url = new URL(path, base);
      const cache = await openCache();
      const key = cacheKey(url, readOptions.sha256);
      if (cache && readOptions.sha256) {
        const hit = await cache.match(key);
        if (hit) return readBody(hit, path, readOptions);
      }
      let response: Response;
      try {
        response = await doFetch(url.href, { signal: readOptions.signal, cache: readOptions.sha256 ? 'default' : 'no-cache' });
      } catch (error) {
        checkAborted(readOptions.signal);
        const offline = cache && !readOptions.sha256 ? await cache.match(key) : undefined;
        if (offline) return readBody(offline, path, readOptions);
        throw new FetchFailedError(path, `could not be fetched from ${url.href} (${(error as Error).message})`, { cause: error });
      }
      if (!response.ok) {
        throw new FetchFailedError(path, `the server answered ${response.status} ${response.statusText} for ${url.href}`);
      }
      const bytes = await readBody(response, path, readOptions);
      if (cache) {
        // Explicit length: the Cache API may drop Content-Length, which progress needs.
        const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) };
        try {
          await cache.put(key, new Response(bytes as Uint8Array<ArrayBuffer>, { headers }));
        } catch {
          // Quota exceeded or storage unavailable: keep going without caching this file.
        }
      }
      return bytes;
    },

    async evict(path, sha256) {
      const cache = await openCache();
      await cache?.delete(cacheKey(new URL(path, base), sha256));
    },

    async isCached(path, sha256, bytes) {
      const cache = await openCache();
      const hit = cache && (await cache.match(cacheKey(new URL(path, base), sha256)));
      if (!hit) return false;
      // The size this IO recorded when it stored the copy: a copy of another size is partial.
      const recorded = hit.headers.get('content-length');
      return bytes === undefined || recorded === null || Number(recorded) === bytes;
    },
  };
}

/** Reads a package from files in memory or on disk, keyed by their path inside the package. */
export function createFileMapIO(files: Map<string, Blob>, location = 'local folder'): PackageIO {
  return {
    location,
    async read(path, options = {}) {
      checkAborted(options.signal);
      const file = files.get(path);
      if (!file) throw new BadPackageError(`is missing from ${location}`, path);
      const bytes = new Uint8Array(await file.arrayBuffer());
      options.onProgress?.(bytes.length, bytes.length);
      return bytes;
    },
  };
}

/**
 * Files from `<input type="file" webkitdirectory>`: their `webkitRelativePath` starts with the
 * picked folder's name, which is dropped so that paths match the manifest's.
 */
export function createFileListIO(files: Iterable<File>): PackageIO {
  const map = new Map<string, Blob>();
  let folder = '';
  for (const file of files) {
    const relative = (file as File & { webkitRelativePath?: string }).webkitRelativePath || file.name;
    const slash = relative.indexOf('/');
    if (slash >= 0) folder ||= relative.slice(0, slash);
    map.set(slash >= 0 ? relative.slice(slash + 1) : relative, file);
  }
  return createFileMapIO(map, folder || 'local folder');
}

/** A folder picked with the File System Access API (`showDirectoryPicker`). */
export function createDirectoryHandleIO(root: FileSystemDirectoryHandle): PackageIO {
  const location = root.name;
  return {
    location,
    async read(path, options = {}) {
      checkAborted(options.signal);
      const parts = path.split('/');
      let dir = root;
      try {
        for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part);
        const file = await (await dir.getFileHandle(parts[parts.length - 1])).getFile();
        const bytes = new Uint8Array(await file.arrayBuffer());
        options.onProgress?.(bytes.length, bytes.length);
        return bytes;
      } catch (error) {
        throw new BadPackageError(`could not be read from the folder ${location} (${(error as Error).message})`, path, { cause: error });
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Cached models: what the fetch IO left in Cache Storage, grouped by package, so a UI can show
// how much each model takes and delete one. A package is known by its cached manifest
// (`<base>/manifest.json`, stored without a sha256); every other entry belongs to the package
// whose folder is the longest prefix of its URL.

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
