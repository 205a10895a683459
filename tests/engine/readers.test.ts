import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
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
    const io = createFetchIO('https://host/models/tiny/', { fetch: net.fetch, policy: { retryDelayMs: 1 } });
    expect(await io.read('manifest.json')).toEqual(manifest);
    expect(await io.read('manifest.json')).toEqual(manifest);
    expect(net.calls).toHaveLength(2);
    net.goOffline();
    expect(await io.read('manifest.json')).toEqual(manifest);
    await expect(io.read('tables.bin', { sha256: 'cd'.repeat(32) })).rejects.toMatchObject({ code: 'fetch-failed', message: expect.stringMatching(/^tables\.bin: could not be fetched/) });
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

/**
 * A local HTTP server whose every answer is scripted: `handlers[n]` answers the n-th request (the
 * last one answers the rest). Requests are recorded with their Range and If-Range headers.
 */
async function scriptedServer(handlers: ((req: IncomingMessage, res: ServerResponse) => void)[]) {
  const requests: { url: string; range?: string; ifRange?: string }[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    requests.push({ url: req.url!, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined });
    handlers[Math.min(requests.length, handlers.length) - 1](req, res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/pkg/`;
  servers.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { base, requests };
}

const servers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((close) => close()));
});

describe('fetch IO on a server that fails', () => {
  const file = new Uint8Array(1000).map((_, i) => (i * 7) % 256);
  const changed = new Uint8Array(1000).map((_, i) => (i * 3) % 256);
  // Short waits so the tests finish quickly; the defaults are FETCH_POLICY's.
  const policy = { stallTimeoutMs: 400, tries: 3, retryDelayMs: 10 };
  const silent = () => undefined;
  const whole = (body: Uint8Array, headers: Record<string, string> = {}) => (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-length': String(body.length), ...headers });
    res.end(body);
  };
  const io = (base: string) => createFetchIO(base, { cacheName: null, policy });

  it('gives up on a server that accepts and never answers, after a bounded number of tries, naming the file and the URL', async () => {
    const server = await scriptedServer([silent]);
    const failure = io(server.base).read('tables.bin');
    await expect(failure).rejects.toMatchObject({
      code: 'fetch-failed',
      message: `tables.bin: no answer from ${server.base}tables.bin for 0.4 s; gave up after 3 tries`,
    });
    expect(server.requests).toHaveLength(3);
  });

  it('gives up on a download that stalls mid-body, saying after how many bytes', async () => {
    const server = await scriptedServer([
      (_req, res) => {
        res.writeHead(200, { 'content-length': '1000' });
        res.write(file.subarray(0, 300));
      },
    ]);
    await expect(io(server.base).read('decoder.onnx')).rejects.toMatchObject({
      code: 'fetch-failed',
      message: `decoder.onnx: the download from ${server.base}decoder.onnx stalled after 300 bytes: no data for 0.4 s; gave up after 3 tries`,
    });
    // No Accept-Ranges: each try asked for the whole file.
    expect(server.requests.map((r) => r.range)).toEqual([undefined, undefined, undefined]);
  });

  it('resumes a download cut off mid-file with a Range request from the bytes received', async () => {
    const headers = { 'accept-ranges': 'bytes', etag: '"v1"' };
    const server = await scriptedServer([
      (_req, res) => {
        res.writeHead(200, { 'content-length': '1000', ...headers });
        res.write(file.subarray(0, 400), () => res.socket!.destroy());
      },
      (req, res) => {
        const start = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')![1]);
        res.writeHead(206, { 'content-length': String(1000 - start), 'content-range': `bytes ${start}-999/1000`, ...headers });
        res.end(file.subarray(start));
      },
    ]);
    const progress: number[] = [];
    const bytes = await io(server.base).read('transformer.onnx', { bytes: 1000, onProgress: (loaded) => progress.push(loaded) });
    expect(bytes).toEqual(file);
    expect(server.requests).toEqual([
      { url: '/pkg/transformer.onnx', range: undefined, ifRange: undefined },
      { url: '/pkg/transformer.onnx', range: 'bytes=400-', ifRange: '"v1"' },
    ]);
    expect(progress.at(-1)).toBe(1000);
    expect(Math.min(...progress.slice(progress.indexOf(400)))).toBe(400); // went on from 400, never back to 0
  });

  it('starts again from the top when the file changed between the cut and the retry (If-Range)', async () => {
    const server = await scriptedServer([
      (_req, res) => {
        res.writeHead(200, { 'content-length': '1000', 'accept-ranges': 'bytes', etag: '"v1"' });
        res.write(file.subarray(0, 400), () => res.socket!.destroy());
      },
      // The file is now v2: If-Range "v1" no longer matches, so the server sends it whole.
      (req, res) => whole(req.headers['if-range'] === '"v2"' ? file : changed, { 'accept-ranges': 'bytes', etag: '"v2"' })(req, res),
    ]);
    expect(await io(server.base).read('transformer.onnx')).toEqual(changed);
    expect(server.requests.map((r) => [r.range, r.ifRange])).toEqual([
      [undefined, undefined],
      ['bytes=400-', '"v1"'],
    ]);
  });

  it('retries a 500 answer with back-off and takes the 200 that follows', async () => {
    const fail = (_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(500, 'Internal Server Error');
      res.end('oops');
    };
    const server = await scriptedServer([fail, fail, whole(file)]);
    expect(await io(server.base).read('tables.bin')).toEqual(file);
    expect(server.requests).toHaveLength(3);
  });

  it('does not retry a 404: one request, and the message names the file and the URL', async () => {
    const server = await scriptedServer([
      (_req, res) => {
        res.writeHead(404, 'Not Found');
        res.end();
      },
    ]);
    await expect(io(server.base).read('decoder.onnx')).rejects.toMatchObject({
      code: 'bad-package',
      message: `decoder.onnx: the server answered 404 Not Found for ${server.base}decoder.onnx`,
    });
    expect(server.requests).toHaveLength(1);
  });

  it('cancelling stops a stalled download and a back-off wait at once', async () => {
    const slow = createFetchIO((await scriptedServer([silent])).base, { cacheName: null, policy: { stallTimeoutMs: 600_000 } });
    const controller = new AbortController();
    const stalled = slow.read('tables.bin', { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(stalled).rejects.toMatchObject({ code: 'cancelled', message: 'Loading was cancelled.' });

    const failing = await scriptedServer([
      (_req, res) => {
        res.writeHead(503, 'Service Unavailable');
        res.end();
      },
    ]);
    const waiting = createFetchIO(failing.base, { cacheName: null, policy: { retryDelayMs: 600_000 } });
    const second = new AbortController();
    const backingOff = waiting.read('tables.bin', { signal: second.signal });
    await vi.waitFor(() => expect(failing.requests).toHaveLength(1));
    second.abort();
    await expect(backingOff).rejects.toMatchObject({ code: 'cancelled' });
    expect(failing.requests).toHaveLength(1);
  });
});
