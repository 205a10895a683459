// An import written straight into the engine's package cache (Cache Storage, MODEL_CACHE_NAME),
// under a package base URL of its own, with the keys the fetch IO looks files up by
// (`<base><path>?sha256=<hex>`, the manifest without one): loading that URL then finds every
// file there, and the cached-model list shows it once its manifest is stored, which is last.
// A file is streamed into the cache under a key of its own while it is written (never whole in
// memory), and moved to its final key once its hash is known; a cancelled or failed file leaves
// nothing.
import { EngineError } from '../errors';
import { MANIFEST_FILE } from '../manifest';
import { MODEL_CACHE_NAME, packageBaseUrl } from '../readers';
import type { Sink } from './sink';

export interface CacheSinkOptions {
  /** Cache Storage; `globalThis.caches` by default. */
  caches?: CacheStorage;
  cacheName?: string;
}

const WRITING = 'writing';
const HEX64 = /^[0-9a-f]{64}$/;

function storageFailed(path: string, error: unknown): EngineError {
  const quota = (error as { name?: string } | null)?.name === 'QuotaExceededError';
  const why = quota ? "the browser's storage is full (delete a downloaded model to make room)" : `the browser's storage refused it (${(error as Error)?.message ?? String(error)})`;
  return new EngineError('internal', `${path} could not be stored: ${why}.`);
}

export interface CacheSink extends Sink {
  baseUrl: string;
  /** A closed file's bytes as they come from the cache, chunk by chunk. */
  chunks(path: string): AsyncIterable<Uint8Array>;
}

export function createCacheSink(baseUrl: string, options: CacheSinkOptions = {}): CacheSink {
  const base = packageBaseUrl(baseUrl);
  const storage = options.caches ?? (globalThis as { caches?: CacheStorage }).caches;
  const cacheName = options.cacheName ?? MODEL_CACHE_NAME;
  let opened: Promise<Cache> | undefined;
  const cache = () => {
    if (!storage) throw new EngineError('internal', "This browser has no Cache Storage to keep an imported model in.");
    return (opened ??= storage.open(cacheName));
  };
  const fileUrl = (path: string) => new URL(path, base);
  const keyOf = (path: string, sha256?: string) => {
    const url = fileUrl(path);
    if (sha256) url.searchParams.set('sha256', sha256);
    return url.href;
  };
  /** Every cached version of `path` (any sha256, or being written). */
  const versions = async (path: string) => {
    const plain = fileUrl(path).href;
    return (await (await cache()).keys()).map((r) => new URL(r.url)).filter((u) => `${u.origin}${u.pathname}` === plain);
  };

  const written = async (path: string): Promise<Response> => {
    const store = await cache();
    const found = (await versions(path)).find((u) => !u.searchParams.has(WRITING));
    const hit = found && (await store.match(found.href));
    if (!hit) throw new EngineError('internal', `${path} has not been written`);
    return hit;
  };

  return {
    location: base.href,
    baseUrl: base.href,

    async create(path, bytes) {
      const store = await cache();
      const final = path === MANIFEST_FILE;
      // Writing a package again makes it incomplete until its manifest is stored again.
      if (!final) await store.delete(keyOf(MANIFEST_FILE));
      const temp = fileUrl(path);
      temp.searchParams.set(WRITING, String(Date.now()) + Math.random().toString(16).slice(2));
      const pipe = new TransformStream<Uint8Array, Uint8Array>();
      const writer = pipe.writable.getWriter();
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
      if (bytes !== undefined) headers['content-length'] = String(bytes);
      const stored = store.put(temp.href, new Response(pipe.readable as ReadableStream<Uint8Array<ArrayBuffer>>, { headers }));
      stored.catch(() => undefined);
      let size = 0;
      const forget = async () => {
        await writer.abort().catch(() => undefined);
        await stored.catch(() => undefined);
        await store.delete(temp.href).catch(() => undefined);
      };
      return {
        async write(chunk) {
          size += chunk.length;
          try {
            await writer.write(chunk.slice());
          } catch (error) {
            await forget();
            throw storageFailed(path, await stored.then(() => error, (e: unknown) => e));
          }
        },
        async close(written) {
          try {
            await writer.close();
            await stored;
            const copy = await store.match(temp.href);
            if (!copy) throw new Error('the written file is gone');
            // Older versions of this file would make the package's size wrong in the list.
            for (const old of await versions(path)) if (old.href !== temp.href) await store.delete(old.href);
            const sha256 = final ? undefined : written?.sha256;
            await store.put(keyOf(path, sha256), new Response(copy.body, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) } }));
          } catch (error) {
            await forget();
            throw storageFailed(path, error);
          }
          await store.delete(temp.href);
        },
        abort: forget,
      };
    },

    async read(path) {
      return new Uint8Array(await (await written(path)).arrayBuffer());
    },

    async *chunks(path) {
      const response = await written(path);
      if (!response.body) {
        yield new Uint8Array(await response.arrayBuffer());
        return;
      }
      const reader = response.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          yield value;
        }
      } finally {
        await reader.cancel().catch(() => undefined);
      }
    },

    async complete(path) {
      const store = await cache();
      for (const url of await versions(path)) {
        const sha256 = url.searchParams.get('sha256');
        if (!sha256 || !HEX64.test(sha256) || url.searchParams.has(WRITING)) continue;
        const hit = await store.match(url.href);
        const bytes = Number(hit?.headers.get('content-length'));
        await hit?.body?.cancel().catch(() => undefined);
        if (hit && Number.isSafeInteger(bytes)) return { bytes, sha256 };
      }
      return undefined;
    },
  };
}

/** Removes what an interrupted write left (its `?writing=` entries) under a package base URL. */
export async function dropUnfinished(baseUrl: string, options: CacheSinkOptions = {}): Promise<void> {
  const storage = options.caches ?? (globalThis as { caches?: CacheStorage }).caches;
  if (!storage) return;
  const store = await storage.open(options.cacheName ?? MODEL_CACHE_NAME);
  const base = packageBaseUrl(baseUrl).href;
  for (const request of await store.keys()) {
    const url = new URL(request.url);
    if (request.url.startsWith(base) && url.searchParams.has(WRITING)) await store.delete(request.url);
  }
}
