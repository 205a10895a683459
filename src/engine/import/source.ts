// Where the importer reads published files from: one small interface (byte ranges of a named
// file, its size, the names in a folder) over Hugging Face / any HTTP server, a folder the user
// picked in the browser, and (node.ts) a folder on disk. Multi-gigabyte checkpoints are read
// range by range, so none is ever held whole in memory.
import { CheckpointError, EngineError, FetchFailedError, LOADING_CANCELLED, throwIfCancelled } from '../errors';
import { FETCH_POLICY, isTransientStatus, networkReason, pause, retryAfterMs, TransientFailure, type FetchPolicy } from '../readers';

export interface Source {
  /** Where the files are, for messages (a folder, a URL). */
  readonly location: string;
  /** The file's size in bytes; a CheckpointError naming the file when it does not exist. */
  size(path: string, signal?: AbortSignal): Promise<number>;
  exists(path: string, signal?: AbortSignal): Promise<boolean>;
  /** Bytes `[start, end)` of the file. */
  read(path: string, start: number, end: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Names of the files directly inside `folder` ('' for the top), sorted; [] when it does not exist. */
  list(folder: string, signal?: AbortSignal): Promise<string[]>;
  /** The file's full name (path or URL), for messages. */
  describe(path: string): string;
}

/** The whole file (for small files: configs, tokenizers, pickles' data.pkl). */
export async function readAll(source: Source, path: string, signal?: AbortSignal): Promise<Uint8Array> {
  return source.read(path, 0, await source.size(path, signal), signal);
}

export async function readJson(source: Source, path: string, signal?: AbortSignal): Promise<unknown> {
  const bytes = await readAll(source, path, signal);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new CheckpointError(`is not valid JSON (${(error as Error).message})`, source.describe(path));
  }
}

/** The files under `prefix/` of `source`, as a source of their own (HART's `llm/`, `tokenizer/`). */
export function subSource(source: Source, prefix: string): Source {
  const clean = prefix.replace(/\/+$/, '');
  const inner = (path: string) => (clean ? `${clean}/${path}` : path);
  return {
    location: source.describe(clean),
    size: (path, signal) => source.size(inner(path), signal),
    exists: (path, signal) => source.exists(inner(path), signal),
    read: (path, start, end, signal) => source.read(inner(path), start, end, signal),
    list: (folder, signal) => source.list(folder ? inner(folder) : clean, signal),
    describe: (path) => source.describe(inner(path)),
  };
}

function checkRange(source: Source, path: string, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`${source.describe(path)}: bad byte range [${start}, ${end})`);
  }
}

function missing(where: string): CheckpointError {
  return new CheckpointError('missing file', where);
}

// ---------------------------------------------------------------------------------------------
// HTTP (Hugging Face)

export interface HttpSourceOptions {
  fetch?: typeof fetch;
  /**
   * The origin of a hub that serves repositories as Hugging Face does (`/{repo}/resolve/{rev}/…`,
   * `/api/models/{repo}/tree/{rev}`); https://huggingface.co by default.
   */
  hub?: string;
  /** Stall timeout and retries; the engine's FETCH_POLICY for what is not given. */
  policy?: Partial<FetchPolicy>;
  /**
   * Reads up to this size are served from aligned blocks of it, fetched once (default 4 MiB):
   * a checkpoint's many small tensors then cost a few requests, not one round trip (and a
   * redirect) each.
   */
  readAheadBytes?: number;
}

/** Blocks kept per source: enough for the few files read side by side. */
const KEPT_BLOCKS = 16;

const HF_HOST = 'https://huggingface.co';

/**
 * Resolves `hf://owner/name`, `https://huggingface.co/owner/name[/tree|resolve/REV]` (or the same
 * under another `hub` origin) to the repository and revision; null for any other URL.
 */
export function huggingFaceRepo(url: string, hub = HF_HOST): { repo: string; revision: string } | null {
  const host = hub.replace(/\/+$/, '');
  let rest: string;
  if (url.startsWith('hf://')) rest = url.slice('hf://'.length);
  else if (url.startsWith(`${host}/`)) rest = url.slice(host.length + 1);
  else return null;
  const parts = rest.split('/').filter(Boolean);
  if (parts.length < 2) return null;
  const revision = parts.length >= 4 && (parts[2] === 'tree' || parts[2] === 'resolve') ? parts[3] : 'main';
  return { repo: `${parts[0]}/${parts[1]}`, revision };
}

/** Whether a command-line value names a URL rather than a folder. */
export function isUrl(value: string): boolean {
  return /^(https?|hf):\/\//.test(value);
}

/**
 * Files over HTTP with Range requests. A Hugging Face repository (see `huggingFaceRepo`) is read
 * from `{hub}/{repo}/resolve/{revision}/{path}` (redirects followed) and listed through its tree
 * API; any other URL is a folder whose files are `{url}/{path}` (not listable). Every request
 * waits and retries as the engine's package downloads do (FETCH_POLICY): a stalled or cut
 * transfer is asked again for the bytes still missing only.
 */
export function createHttpSource(url: string, options: HttpSourceOptions = {}): Source {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const policy: FetchPolicy = { ...FETCH_POLICY, ...options.policy };
  const hubHost = (options.hub ?? HF_HOST).replace(/\/+$/, '');
  const hf = huggingFaceRepo(url, hubHost);
  const base = hf ? `${hubHost}/${hf.repo}/resolve/${hf.revision}/` : url.endsWith('/') ? url : `${url}/`;
  const fileUrl = (path: string) => base + path.split('/').map(encodeURIComponent).join('/');
  const sizes = new Map<string, number>();
  const blockSize = options.readAheadBytes ?? 4 << 20;
  const blocks = new Map<string, Promise<Uint8Array>>();

  /**
   * One fetch under the policy: `attempt` gets the answer and reads what it needs from it, with
   * the stall timer rearmed by `alive()` for every chunk. Transient failures are tried again
   * (after the policy's back-off), anything else is thrown at once.
   */
  async function withRetries<T>(what: string, where: string, attempt: (fetchOnce: (init: RequestInit) => Promise<Response>, alive: () => void) => Promise<T>, signal?: AbortSignal): Promise<T> {
    let last: TransientFailure | undefined;
    for (let tries = 1; tries <= policy.tries; tries++) {
      if (tries > 1) await pause(Math.max(policy.retryDelayMs * 2 ** (tries - 2), last?.retryAfterMs ?? 0), signal);
      throwIfCancelled(signal, LOADING_CANCELLED);
      const controller = new AbortController();
      const cancel = () => controller.abort();
      signal?.addEventListener('abort', cancel, { once: true });
      let stalled = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const alive = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          stalled = true;
          controller.abort();
        }, policy.stallTimeoutMs);
      };
      let answered = false;
      try {
        alive();
        return await attempt(async (init) => {
          const response = await doFetch(where, { ...init, signal: controller.signal, redirect: 'follow' });
          answered = true;
          alive();
          if (!response.ok && response.status !== 416 && isTransientStatus(response.status)) {
            await response.body?.cancel().catch(() => undefined);
            const status = response.statusText ? `${response.status} ${response.statusText}` : String(response.status);
            throw new TransientFailure(`the server answered ${status} for ${where}`, retryAfterMs(response.headers.get('retry-after')));
          }
          return response;
        }, alive);
      } catch (error) {
        throwIfCancelled(signal, LOADING_CANCELLED);
        if (error instanceof EngineError) throw error;
        const seconds = Math.round(policy.stallTimeoutMs / 100) / 10;
        last = error instanceof TransientFailure
          ? error
          : stalled
            ? new TransientFailure(answered ? `the download from ${where} stalled: no data for ${seconds} s` : `no answer from ${where} for ${seconds} s`)
            : new TransientFailure(answered ? `the download from ${where} broke off (${networkReason(error)})` : `could not be fetched from ${where} (${networkReason(error)})`);
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', cancel);
      }
    }
    const tries = policy.tries === 1 ? '1 try' : `${policy.tries} tries`;
    throw new FetchFailedError(what, `${last!.message}; gave up after ${tries}`, { cause: last });
  }

  /** Answers that are final: the file is not there, or the server refuses for good. */
  function checkAnswer(response: Response, path: string, where: string): void {
    if (response.status === 404 || response.status === 410) throw missing(`${path} (${where} answered ${response.status})`);
    if (response.status === 416) return; // a range past the end of an empty file
    if (!response.ok) throw new FetchFailedError(path, `the server answered ${response.status} ${response.statusText} for ${where}`);
  }

  /**
   * Reads a body into `out` from `filled` on, skipping the first `skip` bytes of the body (a
   * server that ignored Range), until `out` is full. `at.filled` follows every chunk, so a
   * transfer that breaks off keeps what arrived.
   */
  async function readInto(response: Response, out: Uint8Array, at: { filled: number }, skip: number, alive: () => void, signal?: AbortSignal): Promise<void> {
    if (!response.body) {
      const all = new Uint8Array(await response.arrayBuffer());
      const part = all.subarray(skip, skip + (out.length - at.filled));
      out.set(part, at.filled);
      at.filled += part.length;
      return;
    }
    const reader = response.body.getReader();
    let seen = 0;
    try {
      while (at.filled < out.length) {
        throwIfCancelled(signal, LOADING_CANCELLED);
        const { done, value } = await reader.read();
        if (done) break;
        alive();
        const from = Math.max(0, skip - seen);
        seen += value.length;
        if (from >= value.length) continue;
        const chunk = value.subarray(from, from + (out.length - at.filled));
        out.set(chunk, at.filled);
        at.filled += chunk.length;
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }

  /** Bytes `[start, end)` of a file in one request, retried for what is still missing. */
  async function fetchRange(path: string, start: number, end: number, signal?: AbortSignal): Promise<Uint8Array> {
    const out = new Uint8Array(end - start);
    const where = fileUrl(path);
    const at = { filled: 0 };
    return withRetries(path, where, async (fetchOnce, alive) => {
      // A retry asks only for the bytes still missing.
      const from = start + at.filled;
      const response = await fetchOnce({ headers: { Range: `bytes=${from}-${end - 1}` } });
      checkAnswer(response, path, where);
      // 206: the range; 200: a server without Range support sends the whole file.
      await readInto(response, out, at, response.status === 206 ? 0 : from, alive, signal);
      if (at.filled < out.length) throw new TransientFailure(`the download of ${where} broke off after ${start + at.filled} of ${end} bytes`);
      return out;
    }, signal);
  }

  const source: Source = {
    location: hf ? `${hubHost}/${hf.repo}` : base,
    describe: fileUrl,

    async size(path, signal) {
      const known = sizes.get(path);
      if (known !== undefined) return known;
      const where = fileUrl(path);
      // One byte by Range tells the total in Content-Range, on Hugging Face's redirects as well.
      const total = await withRetries(path, where, async (fetchOnce) => {
        const response = await fetchOnce({ headers: { Range: 'bytes=0-0' } });
        checkAnswer(response, path, where);
        await response.body?.cancel().catch(() => undefined);
        if (response.status === 416) return 0;
        const range = response.headers.get('content-range');
        const value = range ? Number(range.split('/')[1]) : Number(response.headers.get('content-length'));
        if (!Number.isSafeInteger(value)) throw new FetchFailedError(path, `the server told no size for ${where} (no Content-Range or Content-Length)`);
        return value;
      }, signal);
      sizes.set(path, total);
      return total;
    },

    async exists(path, signal) {
      try {
        await source.size(path, signal);
        return true;
      } catch (error) {
        if (error instanceof CheckpointError) return false;
        throw error;
      }
    },

    async read(path, start, end, signal) {
      checkRange(source, path, start, end);
      if (end === start) return new Uint8Array(0);
      if (end - start > blockSize) return fetchRange(path, start, end, signal);
      const size = await source.size(path, signal);
      if (end > size) throw new CheckpointError(`is ${size} bytes, shorter than expected (${end})`, fileUrl(path));
      const out = new Uint8Array(end - start);
      for (let b = Math.floor(start / blockSize); b * blockSize < end; b++) {
        const key = `${b}:${path}`;
        let block = blocks.get(key);
        if (!block) {
          block = fetchRange(path, b * blockSize, Math.min(size, (b + 1) * blockSize), signal);
          blocks.set(key, block);
          block.catch(() => blocks.delete(key));
          while (blocks.size > KEPT_BLOCKS) blocks.delete(blocks.keys().next().value!);
        }
        const bytes = await block;
        const from = Math.max(start, b * blockSize);
        const to = Math.min(end, (b + 1) * blockSize);
        out.set(bytes.subarray(from - b * blockSize, to - b * blockSize), from - start);
      }
      return out;
    },

    async list(folder, signal) {
      if (!hf) return [];
      const where = `${hubHost}/api/models/${hf.repo}/tree/${hf.revision}${folder ? `/${folder}` : ''}`;
      const entries = await withRetries(folder || '/', where, async (fetchOnce) => {
        const response = await fetchOnce({});
        if (response.status === 404) return [];
        if (!response.ok) throw new FetchFailedError(folder || '/', `the server answered ${response.status} for ${where}`);
        return (await response.json()) as { type?: string; path?: string; size?: number }[];
      }, signal);
      const names: string[] = [];
      for (const entry of entries) {
        if (entry.type !== 'file' || typeof entry.path !== 'string') continue;
        if (typeof entry.size === 'number') sizes.set(entry.path, entry.size);
        names.push(entry.path.slice(entry.path.lastIndexOf('/') + 1));
      }
      return names.sort();
    },
  };
  return source;
}

// ---------------------------------------------------------------------------------------------
// Browser folders

/**
 * Files the user picked (`<input type="file" webkitdirectory>`, whose `webkitRelativePath` starts
 * with the folder's name, dropped here), or any map of relative paths to Blobs.
 */
export function createBlobSource(files: Iterable<File> | Map<string, Blob>, location?: string): Source {
  let map: Map<string, Blob>;
  let folder = '';
  if (files instanceof Map) map = files;
  else {
    map = new Map();
    for (const file of files) {
      const relative = (file as File & { webkitRelativePath?: string }).webkitRelativePath || file.name;
      const slash = relative.indexOf('/');
      if (slash >= 0) folder ||= relative.slice(0, slash);
      map.set(slash >= 0 ? relative.slice(slash + 1) : relative, file);
    }
  }
  const where = location ?? (folder || 'local folder');
  const blob = (path: string) => {
    const found = map.get(path);
    if (!found) throw missing(`${where}/${path}`);
    return found;
  };
  const source: Source = {
    location: where,
    describe: (path) => `${where}/${path}`,
    async size(path) {
      return blob(path).size;
    },
    async exists(path) {
      return map.has(path);
    },
    async read(path, start, end, signal) {
      checkRange(source, path, start, end);
      throwIfCancelled(signal, LOADING_CANCELLED);
      const file = blob(path);
      if (end > file.size) throw new CheckpointError(`is ${file.size} bytes, shorter than expected (${end})`, source.describe(path));
      return new Uint8Array(await file.slice(start, end).arrayBuffer());
    },
    async list(folderPath) {
      const prefix = folderPath ? `${folderPath.replace(/\/+$/, '')}/` : '';
      return [...map.keys()]
        .filter((p) => p.startsWith(prefix) && !p.slice(prefix.length).includes('/'))
        .map((p) => p.slice(prefix.length))
        .sort();
    },
  };
  return source;
}

/** A folder picked with the File System Access API (`showDirectoryPicker`). */
export function createDirectoryHandleSource(root: FileSystemDirectoryHandle): Source {
  const where = root.name;
  const directory = async (parts: string[]): Promise<FileSystemDirectoryHandle | null> => {
    let dir = root;
    try {
      for (const part of parts) dir = await dir.getDirectoryHandle(part);
      return dir;
    } catch {
      return null;
    }
  };
  const file = async (path: string): Promise<File | null> => {
    const parts = path.split('/');
    const dir = await directory(parts.slice(0, -1));
    try {
      return dir ? await (await dir.getFileHandle(parts[parts.length - 1])).getFile() : null;
    } catch {
      return null;
    }
  };
  const source: Source = {
    location: where,
    describe: (path) => `${where}/${path}`,
    async size(path) {
      const found = await file(path);
      if (!found) throw missing(source.describe(path));
      return found.size;
    },
    async exists(path) {
      return (await file(path)) !== null;
    },
    async read(path, start, end, signal) {
      checkRange(source, path, start, end);
      throwIfCancelled(signal, LOADING_CANCELLED);
      const found = await file(path);
      if (!found) throw missing(source.describe(path));
      if (end > found.size) throw new CheckpointError(`is ${found.size} bytes, shorter than expected (${end})`, source.describe(path));
      return new Uint8Array(await found.slice(start, end).arrayBuffer());
    },
    async list(folder) {
      const dir = await directory(folder ? folder.split('/').filter(Boolean) : []);
      if (!dir) return [];
      const names: string[] = [];
      const entries = (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries();
      for await (const [name, handle] of entries) if (handle.kind === 'file') names.push(name);
      return names.sort();
    },
  };
  return source;
}
