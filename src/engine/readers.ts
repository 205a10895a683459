// How the engine reads a model package: one small interface, with implementations for URLs
// (fetch, with Cache Storage for offline use and byte progress), for a folder the user picked in
// the browser, and (in node.ts) for a folder on disk.
import { BadPackageError, CancelledError, FetchFailedError, LOADING_CANCELLED, throwIfCancelled } from './errors';

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
      throwIfCancelled(options.signal, LOADING_CANCELLED);
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
      throwIfCancelled(readOptions.signal, LOADING_CANCELLED);
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
        throwIfCancelled(readOptions.signal, LOADING_CANCELLED);
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
      throwIfCancelled(options.signal, LOADING_CANCELLED);
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
      throwIfCancelled(options.signal, LOADING_CANCELLED);
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
