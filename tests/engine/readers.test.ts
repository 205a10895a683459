import { afterEach, describe, expect, it } from 'vitest';
import { createFetchIO, createFileListIO, packageBaseUrl } from '../../src/engine/readers';

/** An in-memory Cache Storage with the few methods the fetch IO uses. */
function fakeCaches() {
  const stores = new Map<string, Map<string, Response>>();
  const open = async (name: string) => {
    const store = stores.get(name) ?? new Map<string, Response>();
    stores.set(name, store);
    return {
      match: async (key: string) => store.get(key)?.clone(),
      put: async (key: string, response: Response) => void store.set(key, response),
      delete: async (key: string) => store.delete(key),
    };
  };
  return { stores, caches: { open } as unknown as CacheStorage };
}

function fakeFetch(files: Record<string, Uint8Array>) {
  const calls: string[] = [];
  let offline = false;
  const fetch = async (url: string) => {
    calls.push(url);
    if (offline) throw new TypeError('Failed to fetch');
    const path = new URL(url).pathname.replace('/models/tiny/', '');
    const body = files[path];
    if (!body) return new Response('not found', { status: 404, statusText: 'Not Found' });
    // Two chunks, so progress is reported more than once.
    const half = body.length >> 1;
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(body.subarray(0, half));
        controller.enqueue(body.subarray(half));
        controller.close();
      },
    });
    return new Response(stream, { headers: { 'content-length': String(body.length) } });
  };
  return { calls, fetch: fetch as unknown as typeof globalThis.fetch, goOffline: () => (offline = true) };
}

const g = globalThis as { caches?: CacheStorage };
afterEach(() => {
  delete g.caches;
});

describe('fetch IO', () => {
  const data = new Uint8Array(1000).map((_, i) => i % 256);
  const manifest = new TextEncoder().encode('{"format":"hart-web-package"}');

  it('resolves the package folder from a URL or a manifest URL', () => {
    expect(packageBaseUrl('https://host/models/tiny').href).toBe('https://host/models/tiny/');
    expect(packageBaseUrl('https://host/models/tiny/manifest.json').href).toBe('https://host/models/tiny/');
  });

  it('reports byte progress and caches files under their sha256', async () => {
    const { stores, caches } = fakeCaches();
    g.caches = caches;
    const net = fakeFetch({ 'tables.bin': data });
    const io = createFetchIO('https://host/models/tiny/', { fetch: net.fetch });
    const progress: [number, number][] = [];
    const first = await io.read('tables.bin', { sha256: 'ab'.repeat(32), bytes: 1000, onProgress: (l, t) => progress.push([l, t]) });
    expect(first).toEqual(data);
    expect(progress).toEqual([
      [500, 1000],
      [1000, 1000],
    ]);
    const second = await io.read('tables.bin', { sha256: 'ab'.repeat(32) });
    expect(second).toEqual(data);
    expect(net.calls).toHaveLength(1); // the second read came from the cache
    expect([...stores.get('hart-web-models')!.keys()]).toEqual([`https://host/models/tiny/tables.bin?sha256=${'ab'.repeat(32)}`]);
    await io.evict!('tables.bin', 'ab'.repeat(32));
    await io.read('tables.bin', { sha256: 'ab'.repeat(32) });
    expect(net.calls).toHaveLength(2);
  });

  it('fetches the manifest fresh, and falls back to the cached copy offline', async () => {
    const { caches } = fakeCaches();
    g.caches = caches;
    const net = fakeFetch({ 'manifest.json': manifest });
    const io = createFetchIO('https://host/models/tiny/', { fetch: net.fetch });
    expect(await io.read('manifest.json')).toEqual(manifest);
    expect(await io.read('manifest.json')).toEqual(manifest);
    expect(net.calls).toHaveLength(2);
    net.goOffline();
    expect(await io.read('manifest.json')).toEqual(manifest);
    await expect(io.read('tables.bin', { sha256: 'cd'.repeat(32) })).rejects.toMatchObject({ code: 'fetch-failed', message: expect.stringMatching(/^tables\.bin: could not be fetched/) });
  });

  it('names the file and the HTTP status when the server fails', async () => {
    const net = fakeFetch({});
    const io = createFetchIO('https://host/models/tiny/', { fetch: net.fetch, cacheName: null });
    await expect(io.read('decoder.onnx')).rejects.toMatchObject({
      code: 'fetch-failed',
      message: 'decoder.onnx: the server answered 404 Not Found for https://host/models/tiny/decoder.onnx',
    });
  });

  it('stops when the signal is aborted', async () => {
    const net = fakeFetch({ 'tables.bin': data });
    const io = createFetchIO('https://host/models/tiny/', { fetch: net.fetch, cacheName: null });
    const controller = new AbortController();
    controller.abort();
    await expect(io.read('tables.bin', { signal: controller.signal })).rejects.toMatchObject({ code: 'cancelled' });
  });
});

describe('local folder IO', () => {
  it('drops the picked folder name from webkitRelativePath', async () => {
    const file = (path: string, text: string) => Object.assign(new File([text], path.split('/').pop()!), { webkitRelativePath: path });
    const io = createFileListIO([file('hart-shapes/manifest.json', '{}'), file('hart-shapes/sub/a.bin', 'abc')]);
    expect(io.location).toBe('hart-shapes');
    expect(new TextDecoder().decode(await io.read('sub/a.bin'))).toBe('abc');
    await expect(io.read('missing.onnx')).rejects.toMatchObject({ code: 'bad-package', message: 'missing.onnx: is missing from hart-shapes' });
  });
});
