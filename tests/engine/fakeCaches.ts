// An in-memory Cache Storage: the methods the fetch IO and the cache management use, keyed by
// URL strings, with bodies kept as bytes so every match can be read again.

export interface FakeCaches {
  caches: CacheStorage;
  stores: Map<string, Map<string, { body: Uint8Array; headers: [string, string][] }>>;
}

export function fakeCaches(): FakeCaches {
  const stores: FakeCaches['stores'] = new Map();
  const keyOf = (request: RequestInfo | URL) => (typeof request === 'string' ? request : request instanceof URL ? request.href : request.url);
  const cache = (store: Map<string, { body: Uint8Array; headers: [string, string][] }>) => ({
    async match(request: RequestInfo | URL) {
      const entry = store.get(keyOf(request));
      return entry ? new Response(entry.body.slice() as Uint8Array<ArrayBuffer>, { headers: entry.headers }) : undefined;
    },
    async put(request: RequestInfo | URL, response: Response) {
      const body = new Uint8Array(await response.arrayBuffer());
      store.set(keyOf(request), { body, headers: [...response.headers] });
    },
    async delete(request: RequestInfo | URL) {
      return store.delete(keyOf(request));
    },
    async keys() {
      return [...store.keys()].map((url) => new Request(url));
    },
  });
  const caches = {
    async open(name: string) {
      if (!stores.has(name)) stores.set(name, new Map());
      return cache(stores.get(name)!);
    },
    async has(name: string) {
      return stores.has(name);
    },
    async delete(name: string) {
      return stores.delete(name);
    },
  };
  return { caches: caches as unknown as CacheStorage, stores };
}

/** A fetch over an in-memory folder at `base`; records every URL asked for. */
export function fakeFetch(base: string, files: Map<string, Uint8Array> | ((path: string) => Uint8Array | undefined)) {
  const calls: string[] = [];
  const get = typeof files === 'function' ? files : (path: string) => files.get(path);
  const fetch = async (url: string) => {
    calls.push(url);
    const body = url.startsWith(base) ? get(decodeURIComponent(url.slice(base.length))) : undefined;
    if (!body) return new Response('not found', { status: 404, statusText: 'Not Found' });
    return new Response(body.slice() as Uint8Array<ArrayBuffer>, { headers: { 'content-length': String(body.length) } });
  };
  return { calls, fetch: fetch as unknown as typeof globalThis.fetch };
}
