// How the engine reads a model package: one small interface, with implementations for URLs
// (fetch, with Cache Storage for offline use and byte progress), for a folder the user picked in
// the browser, and (in node.ts) for a folder on disk.
import { formatBytes } from './preflight';
import { BadPackageError, CancelledError, EngineError, FetchFailedError, LOADING_CANCELLED, throwIfCancelled } from './errors';

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
  /**
   * Files read in this IO's lifetime that could not be kept for offline use (the browser's
   * storage full, or no storage at all): one sentence for people with the sizes, or undefined.
   */
  notKept?(): Promise<string | undefined>;
}

/** The Cache Storage store that holds downloaded package files. */
export const MODEL_CACHE_NAME = 'hart-web-models';

/** Reads a cached response body, reporting progress. */
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
  return concat(chunks, loaded);
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

/** How every model fetch waits and retries: the one owner of these numbers. */
export interface FetchPolicy {
  /** An attempt that receives no byte (no answer, or no more of the body) for this long is dropped. */
  stallTimeoutMs: number;
  /** Attempts in all for one file, the first included. */
  tries: number;
  /** The wait before the second attempt; it doubles before each later one. */
  retryDelayMs: number;
}

export const FETCH_POLICY: Readonly<FetchPolicy> = { stallTimeoutMs: 30_000, tries: 3, retryDelayMs: 1_000 };

/** The longest wait a server's Retry-After may ask for between two attempts. */
const MAX_RETRY_AFTER_MS = 60_000;

/** Answers worth another try: the server or the way to it is having a bad moment. */
export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** A failure of one attempt that another attempt may not have. */
export class TransientFailure extends Error {
  constructor(
    message: string,
    /** Milliseconds the server asked to wait (Retry-After), if it did. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** Node's fetch says only "fetch failed"; the system's code in its cause says why, put in words. */
export function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  const words: Record<string, string> = {
    ECONNREFUSED: 'the connection was refused',
    ECONNRESET: 'the connection was reset',
    ENOTFOUND: 'no such host',
    EAI_AGAIN: 'the host name could not be looked up',
    ETIMEDOUT: 'the connection timed out',
    EHOSTUNREACH: 'the host is unreachable',
    ENETUNREACH: 'the network is unreachable',
    UND_ERR_SOCKET: 'the connection closed',
  };
  const code = cause?.code;
  if (code && words[code]) return words[code];
  const message = (error as Error)?.message ?? String(error);
  return cause?.message && cause.message !== message ? `${message}: ${cause.message}` : message;
}

export function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : undefined;
}

/** Waits `ms`, or stops at once with a CancelledError when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CancelledError(LOADING_CANCELLED));
    const done = () => {
      signal?.removeEventListener('abort', stop);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(new CancelledError(LOADING_CANCELLED));
    };
    signal?.addEventListener('abort', stop, { once: true });
  });
}

/** The validator a resumed request may name in If-Range: a strong ETag, else Last-Modified. */
function validatorOf(response: Response): string | undefined {
  const etag = response.headers.get('etag');
  if (etag && !etag.startsWith('W/')) return etag;
  return response.headers.get('last-modified') ?? undefined;
}

/** The start and total of a 206 answer's `Content-Range: bytes start-end/total`. */
function contentRange(response: Response): { start: number; total?: number } | undefined {
  const match = /^bytes\s+(\d+)-\d+\/(\d+|\*)$/i.exec(response.headers.get('content-range') ?? '');
  if (!match) return undefined;
  return { start: Number(match[1]), total: match[2] === '*' ? undefined : Number(match[2]) };
}

/**
 * Fetches one file, with a stall timeout on every attempt and retries with exponential back-off
 * for transient failures (no connection, a stall, 408, 429, 5xx). A retry after part of the body
 * arrived asks only for the rest (`Range`, with `If-Range` so a file changed meanwhile comes back
 * whole) when the server said it takes ranges and named a validator. Other 4xx answers are not
 * retried: the package at that address lacks the file. Aborting `options.signal` stops at once.
 */
async function fetchFile(
  doFetch: typeof fetch,
  url: URL,
  path: string,
  init: { cache: RequestCache },
  policy: FetchPolicy,
  options: ReadOptions,
  fallback?: () => Promise<Uint8Array | undefined>,
): Promise<Uint8Array> {
  const { signal } = options;
  let chunks: Uint8Array[] = [];
  let received = 0;
  let total = options.bytes ?? 0;
  // Set from the answer the bytes in `chunks` came from: how to ask for the rest of the same file.
  let resume: { validator: string } | undefined;
  let lastFailure: TransientFailure | undefined;

  for (let attempt = 1; attempt <= policy.tries; attempt++) {
    if (attempt > 1) {
      const backoff = policy.retryDelayMs * 2 ** (attempt - 2);
      await pause(Math.max(backoff, lastFailure?.retryAfterMs ?? 0), signal);
    }
    throwIfCancelled(signal, LOADING_CANCELLED);
    const controller = new AbortController();
    const cancel = () => controller.abort();
    signal?.addEventListener('abort', cancel, { once: true });
    let stalled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const watch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        controller.abort();
      }, policy.stallTimeoutMs);
    };
    let answered = false;
    const resuming = received > 0 && resume !== undefined;
    try {
      watch();
      const headers: Record<string, string> = resuming ? { range: `bytes=${received}-`, 'if-range': resume!.validator } : {};
      const response = await doFetch(url.href, { ...init, headers, signal: controller.signal });
      answered = true;
      watch();
      if (!response.ok) {
        await response.body?.cancel().catch(() => undefined);
        const status = response.statusText ? `${response.status} ${response.statusText}` : String(response.status);
        const answer = `the server answered ${status} for ${url.href}`;
        if (response.status === 416 && resuming) {
          // The range asked for is not there (the file changed size): start again from the top.
          chunks = [];
          received = 0;
          resume = undefined;
          throw new TransientFailure(answer);
        }
        if (isTransientStatus(response.status)) throw new TransientFailure(answer, retryAfterMs(response.headers.get('retry-after')));
        throw new BadPackageError(answer, path);
      }
      const range = response.status === 206 ? contentRange(response) : undefined;
      if (resuming && range?.start === received && validatorOf(response) === resume!.validator) {
        total = range.total ?? total;
      } else {
        // A whole file (the first answer, or a server that sent it all again): start over.
        chunks = [];
        received = 0;
        const length = Number(response.headers.get('content-length'));
        if (!options.bytes && Number.isFinite(length) && length > 0) total = length;
        const validator = validatorOf(response);
        resume = /\bbytes\b/i.test(response.headers.get('accept-ranges') ?? '') && validator ? { validator } : undefined;
        if (response.status === 206) {
          await response.body?.cancel().catch(() => undefined);
          resume = undefined;
          throw new TransientFailure(`the server sent part of ${url.href} when the whole file was asked for`);
        }
      }
      if (!response.body) {
        const rest = new Uint8Array(await response.arrayBuffer());
        chunks.push(rest);
        received += rest.length;
        options.onProgress?.(received, Math.max(total, received));
        return concat(chunks, received);
      }
      const reader = response.body.getReader();
      try {
        for (;;) {
          // A fetch that ignores the signal (a body already in memory) still stops between chunks.
          throwIfCancelled(signal, LOADING_CANCELLED);
          const { done, value } = await reader.read();
          if (done) break;
          watch();
          chunks.push(value);
          received += value.length;
          options.onProgress?.(received, Math.max(total, received));
        }
      } finally {
        reader.releaseLock();
      }
      return concat(chunks, received);
    } catch (error) {
      throwIfCancelled(signal, LOADING_CANCELLED);
      if (error instanceof EngineError) throw error;
      if (!answered && !stalled && fallback) {
        // No connection at all: a cached copy (offline use) beats waiting for retries.
        const cached = await fallback();
        if (cached) return cached;
      }
      const seconds = Math.round(policy.stallTimeoutMs / 100) / 10;
      lastFailure =
        error instanceof TransientFailure
          ? error
          : stalled
            ? new TransientFailure(answered ? `the download from ${url.href} stalled after ${received} bytes: no data for ${seconds} s` : `no answer from ${url.href} for ${seconds} s`)
            : answered
              ? new TransientFailure(`the download from ${url.href} broke off after ${received} bytes (${networkReason(error)})`)
              : new TransientFailure(`could not be fetched from ${url.href} (${networkReason(error)})`);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', cancel);
    }
  }
  const tries = policy.tries === 1 ? '1 try' : `${policy.tries} tries`;
  throw new FetchFailedError(path, `${lastFailure!.message}; gave up after ${tries}`, { cause: lastFailure });
}

export interface FetchIOOptions {
  /** Cache Storage name; null turns caching off. Default 'hart-web-models'. */
  cacheName?: string | null;
  fetch?: typeof fetch;
  /** Stall timeout and retries; FETCH_POLICY for what is not given. */
  policy?: Partial<FetchPolicy>;
  /** Cache Storage; `globalThis.caches` by default. */
  caches?: CacheStorage;
  /** For the usage and quota named when storage is full; `navigator.storage` by default. */
  storage?: { estimate?(): Promise<{ quota?: number; usage?: number }> };
}

function isQuotaError(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'QuotaExceededError' || (error as { code?: unknown } | null)?.code === 22;
}

/** The folder, under the app's own address, where packages imported on this machine are kept. */
export const IMPORTED_FOLDER = 'imported/';

/** The package URL of the catalog entry `id` once imported: `<appBase>imported/<id>/`. */
export function importedPackageUrl(appBase: string, id: string): string {
  return new URL(`${IMPORTED_FOLDER}${encodeURIComponent(id)}/`, packageBaseUrl(appBase)).href;
}

/**
 * Whether a package URL names a package imported on this machine: it exists only in Cache
 * Storage, and no server has it (a dev server may even answer its manifest with the app's page).
 */
export function isImportedPackageUrl(source: string): boolean {
  return packageBaseUrl(source).pathname.includes(`/${IMPORTED_FOLDER}`);
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
  const policy: FetchPolicy = { ...FETCH_POLICY, ...options.policy };
  const storage = options.caches ?? (globalThis as { caches?: CacheStorage }).caches;
  const storageManager = options.storage ?? (globalThis as { navigator?: { storage?: FetchIOOptions['storage'] } }).navigator?.storage;
  // Files that could not be stored, and whether the browser said its storage is full.
  const notStored: { path: string; bytes: number }[] = [];
  let quotaExceeded = false;
  let storeError = '';
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
      // A package imported here is only in the cache: its manifest too is read from there.
      if (cache && !readOptions.sha256 && isImportedPackageUrl(base.href)) {
        const hit = await cache.match(key);
        if (hit) return readBody(hit, path, readOptions);
        throw new BadPackageError(`is not in this browser's storage: the import of ${base.href} did not finish (import it again)`, path);
      }
      // Without a sha256 (the manifest) the network comes first and a cached copy serves offline.
      const offline = cache && !readOptions.sha256 ? async () => {
        const hit = await cache.match(key);
        return hit ? readBody(hit, path, readOptions) : undefined;
      } : undefined;
      const init = { cache: (readOptions.sha256 ? 'default' : 'no-cache') as RequestCache };
      const bytes = await fetchFile(doFetch, url, path, init, policy, readOptions, offline);
      if (cache) {
        // Explicit length: the Cache API may drop Content-Length, which progress needs.
        const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) };
        try {
          await cache.put(key, new Response(bytes as Uint8Array<ArrayBuffer>, { headers }));
        } catch (error) {
          // Quota exceeded or storage unavailable: the model still loads from memory. Whatever
          // part of the entry the failed write left must not pass for a complete copy.
          await cache.delete(key).catch(() => undefined);
          notStored.push({ path, bytes: bytes.length });
          quotaExceeded ||= isQuotaError(error);
          storeError ||= error instanceof Error ? error.message : String(error);
        }
      }
      return bytes;
    },

    async notKept() {
      if (!notStored.length) return undefined;
      const total = notStored.reduce((sum, file) => sum + file.bytes, 0);
      const what = notStored.length === 1 ? `${notStored[0].path} (${formatBytes(total)})` : `${notStored.length} files (${formatBytes(total)}, the largest ${[...notStored].sort((a, b) => b.bytes - a.bytes)[0].path})`;
      if (!quotaExceeded) return `${what} could not be kept for offline use (${storeError}); the model works now and is downloaded again next time.`;
      let estimate: { quota?: number; usage?: number } | undefined;
      try {
        estimate = await storageManager?.estimate?.();
      } catch {
        estimate = undefined;
      }
      const used = estimate?.quota ? ` (this site uses ${formatBytes(estimate.usage ?? 0)} of the ${formatBytes(estimate.quota)} the browser allows it)` : '';
      return `The browser's storage is full${used}: ${what} could not be kept for offline use. The model works now and is downloaded again next time; delete a downloaded model to make room.`;
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
