// Cached models in Cache Storage: listing, deleting one package, persistence, and a download
// resumed after a reload (files already cached are not fetched again).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadEngine } from '../../src/engine/index';
import { deleteCachedModel, estimateStorage, listCachedModels, persistStorage } from '../../src/engine/cache';
import { createFetchIO, type PackageIO } from '../../src/engine/readers';
import { parseManifest } from '../../src/engine/manifest';
import { neededFiles } from '../../src/engine/modelPackage';
import { formatBytes } from '../../src/engine/preflight';
import { fakeCaches, fakeFetch } from './fakeCaches';
import { FIXTURE, importOrt } from './golden';

const g = globalThis as { caches?: CacheStorage };
afterEach(() => {
  delete g.caches;
});

const readFixture = (file: string) => new Uint8Array(readFileSync(path.join(FIXTURE, ...file.split('/'))));
const manifest = parseManifest(JSON.parse(readFileSync(path.join(FIXTURE, 'manifest.json'), 'utf8')));
// What a load downloads: every file but the optional encoder's (fetched on first use).
const loaded = neededFiles(manifest, false);
const total = manifest.files.filter((f) => loaded.includes(f.path)).reduce((n, f) => n + f.bytes, 0);
const manifestBytes = readFixture('manifest.json').length;

/** Reads the fixture package through the fetch IO from `base`, as loadEngine would. */
async function download(base: string, paths = neededFiles(manifest, false)) {
  const net = fakeFetch(base, readFixture);
  const io = createFetchIO(base, { fetch: net.fetch });
  await io.read('manifest.json');
  for (const p of paths) {
    const entry = manifest.files.find((f) => f.path === p)!;
    await io.read(p, { sha256: entry.sha256, bytes: entry.bytes });
  }
  return net;
}

describe('cached models', () => {
  it('lists each cached package with its name, size and whether it loads offline', async () => {
    const { caches } = fakeCaches();
    g.caches = caches;
    expect(await listCachedModels()).toEqual([]);
    await download('https://host/models/tiny/');
    // A second package in a sub-folder, cut short after the tokenizer.
    await download('https://host/models/tiny/v2/', ['tokenizer.json']);
    const models = await listCachedModels();
    expect(models).toEqual([
      { baseUrl: 'https://host/models/tiny/', name: 'hart-tiny', files: loaded.length + 1, bytes: total + manifestBytes, offline: true },
      { baseUrl: 'https://host/models/tiny/v2/', name: 'hart-tiny', files: 2, bytes: manifestBytes + 1129, offline: false },
    ]);
  });

  it('deletes one package and leaves the others', async () => {
    const { caches, stores } = fakeCaches();
    g.caches = caches;
    await download('https://host/models/tiny/');
    await download('https://host/models/tiny/v2/', ['tokenizer.json']);
    expect(await deleteCachedModel('https://host/models/tiny/manifest.json')).toBe(total + manifestBytes);
    expect([...stores.get('hart-web-models')!.keys()].every((k) => k.startsWith('https://host/models/tiny/v2/'))).toBe(true);
    expect((await listCachedModels()).map((m) => m.baseUrl)).toEqual(['https://host/models/tiny/v2/']);
    expect(await deleteCachedModel('https://host/models/tiny/v2')).toBe(manifestBytes + 1129);
    expect(await listCachedModels()).toEqual([]);
    expect(await deleteCachedModel('https://host/models/none/')).toBe(0);
  });

  it('deletes the files of a download cut short before its manifest was cached', async () => {
    const { caches, stores } = fakeCaches();
    g.caches = caches;
    const net = fakeFetch('https://host/m/', readFixture);
    const io = createFetchIO('https://host/m/', { fetch: net.fetch });
    const entry = manifest.files.find((f) => f.path === 'tables.bin')!;
    await io.read('tables.bin', { sha256: entry.sha256 });
    expect(await listCachedModels()).toEqual([]);
    expect(await deleteCachedModel('https://host/m/')).toBe(entry.bytes);
    expect(stores.get('hart-web-models')!.size).toBe(0);
  });

  it('works without Cache Storage', async () => {
    expect(await listCachedModels()).toEqual([]);
    expect(await deleteCachedModel('https://host/models/tiny/')).toBe(0);
  });
});

describe('storage persistence', () => {
  it('asks for persistent storage once, and reports what the browser decided', async () => {
    const asked: string[] = [];
    const storage = (persisted: boolean, grant: boolean) => ({
      persisted: async () => (asked.push('persisted'), persisted),
      persist: async () => (asked.push('persist'), grant),
    });
    expect(await persistStorage(storage(true, false))).toBe(true);
    expect(asked).toEqual(['persisted']);
    expect(await persistStorage(storage(false, true))).toBe(true);
    expect(await persistStorage(storage(false, false))).toBe(false);
    expect(await persistStorage({ persist: async () => Promise.reject(new Error('denied')) })).toBe(false);
    expect(await persistStorage({})).toBeUndefined();
    expect(await persistStorage(undefined)).toBeUndefined();
    expect(await estimateStorage({ estimate: async () => ({ quota: 10, usage: 3 }) })).toEqual({ quota: 10, usage: 3 });
    expect(await estimateStorage({})).toBeUndefined();
  });
});

describe('resume after a reload', () => {
  it('fetches only the files a cancelled load did not cache', async () => {
    const { caches, stores } = fakeCaches();
    g.caches = caches;
    const ort = await importOrt('onnxruntime-node');
    const base = 'https://host/models/tiny/';
    const needed = neededFiles(manifest, false);

    // First visit: the user cancels after three files.
    const first = fakeFetch(base, readFixture);
    const controller = new AbortController();
    const seen = new Set<string>();
    const cancelled = loadEngine(base, {
      ort,
      io: createFetchIO(base, { fetch: first.fetch }),
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase === 'download' && p.file) seen.add(p.file);
        if (seen.size === 3) controller.abort();
      },
    });
    await expect(cancelled).rejects.toMatchObject({ code: 'cancelled' });
    const fetchedFirst = first.calls.map((u) => u.slice(base.length)).filter((p) => p !== 'manifest.json');
    expect(fetchedFirst).toEqual(needed.slice(0, 3));
    // The file being read when the user cancelled is not cached; the ones before it are.
    const cached = new Set([...stores.get('hart-web-models')!.keys()].map((k) => new URL(k).pathname.slice('/models/tiny/'.length)));
    expect(needed.filter((p) => cached.has(p))).toEqual(needed.slice(0, 2));

    // After a reload (a new IO, same Cache Storage): the rest only, then a working engine.
    const second = fakeFetch(base, readFixture);
    const engine = await loadEngine(base, { ort, io: createFetchIO(base, { fetch: second.fetch }) });
    try {
      const fetchedSecond = second.calls.map((u) => u.slice(base.length));
      expect(fetchedSecond).toEqual(['manifest.json', ...needed.slice(2)]);
      expect(engine.info.name).toBe('hart-tiny');
    } finally {
      await engine.dispose();
    }

    // A third visit downloads nothing but the manifest.
    const third = fakeFetch(base, readFixture);
    const again = await loadEngine(base, { ort, io: createFetchIO(base, { fetch: third.fetch }) });
    await again.dispose();
    expect(third.calls).toEqual([`${base}manifest.json`]);
  });
});

describe('loading a cached package one graph at a time', () => {
  const base = 'https://host/models/tiny/';
  const needed = neededFiles(manifest, false);
  const bytesOf = (p: string) => manifest.files.find((f) => f.path === p)!.bytes;
  const neededBytes = needed.reduce((n, p) => n + bytesOf(p), 0);
  const graphs = ['textEncoder', 'condition', 'transformer', 'head', 'scaleUpdate', 'diffusionHead', 'decoder', 'preview'] as const;
  const graphFiles = graphs.map((name) => {
    const v = manifest.graphs[name].fp32;
    return [v.path, ...(v.externalData ?? [])];
  });
  const smallFiles = needed.filter((p) => !graphFiles.flat().includes(p));
  /** Upload phase: each graph's files are read right after its upload starts, and nothing else. */
  const uploadLog = graphs.flatMap((_, i) => [`upload ${graphFiles[i][0]}`, ...graphFiles[i].map((p) => `read ${p}`)]);

  /**
   * The fetch IO over a fake server, logging every read next to the load's upload events, and
   * the bytes every sha256 was computed over (the package's verification).
   */
  function loggingIO(files: (p: string) => Uint8Array | undefined = readFixture, cacheName?: null) {
    const net = fakeFetch(base, files);
    const inner = createFetchIO(base, { fetch: net.fetch, cacheName });
    const log: string[] = [];
    const io = { ...inner, read: (p: string, o?: Parameters<typeof inner.read>[1]) => (log.push(`read ${p}`), inner.read(p, o)) };
    return { io, log, net, fetched: () => net.calls.map((u) => u.slice(base.length)) };
  }

  async function load(io: PackageIO, log: string[] = [], downloads: number[] = []) {
    const ort = await importOrt('onnxruntime-node');
    const hashed: number[] = [];
    const digest = crypto.subtle.digest.bind(crypto.subtle);
    const spy = vi.spyOn(crypto.subtle, 'digest').mockImplementation((algorithm, data) => {
      hashed.push((data as Uint8Array).byteLength);
      return digest(algorithm, data);
    });
    try {
      const engine = await loadEngine(base, {
        ort,
        io,
        onProgress: (p) => {
          if (p.phase === 'upload' && p.file) log.push(`upload ${p.file}`);
          if (p.phase === 'download') downloads.push(p.loaded);
        },
      });
      await engine.dispose();
    } finally {
      spy.mockRestore();
    }
    return { hashedBytes: hashed.reduce((a, b) => a + b, 0), hashes: hashed.length };
  }

  /** The cached copy of `file` in the fake Cache Storage. */
  function cachedCopy(stores: ReturnType<typeof fakeCaches>['stores'], file: string) {
    const entry = manifest.files.find((f) => f.path === file)!;
    return stores.get('hart-web-models')!.get(`${base}${file}?sha256=${entry.sha256}`)!;
  }

  it('a first load fetches each file once, verifies each byte once, and reads a cached graph back just before its session', async () => {
    g.caches = fakeCaches().caches;
    const { io, log, fetched } = loggingIO();
    const downloads: number[] = [];
    const { hashedBytes, hashes } = await load(io, log, downloads);
    expect(fetched()).toEqual(['manifest.json', ...needed]);
    expect(downloads.at(-1)).toBe(neededBytes);
    expect(downloads.every((v, i) => i === 0 || v >= downloads[i - 1])).toBe(true);
    // Download phase: every file once (from the network); upload phase: each graph read back from the cache.
    expect(log.slice(0, needed.length + 1)).toEqual(['read manifest.json', ...needed.map((p) => `read ${p}`)]);
    expect(log.slice(needed.length + 1)).toEqual(uploadLog);
    // One sha256 per file, over its bytes: a fetched graph is verified where the upload reads it, not twice.
    expect(hashes).toBe(needed.length);
    expect(hashedBytes).toBe(neededBytes);
  });

  it('a cached load reads and verifies each file once: graphs at upload, nothing from the network but the manifest', async () => {
    g.caches = fakeCaches().caches;
    await load(loggingIO().io);
    const { io, log, fetched } = loggingIO();
    const downloads: number[] = [];
    const { hashedBytes, hashes } = await load(io, log, downloads);
    expect(fetched()).toEqual(['manifest.json']);
    // The download phase reads only the small files (tokenizer, tables); each graph is read once, at its upload.
    expect(log).toEqual(['read manifest.json', ...smallFiles.map((p) => `read ${p}`), ...uploadLog]);
    expect(needed.every((p) => log.filter((l) => l === `read ${p}`).length === 1)).toBe(true);
    expect(hashes).toBe(needed.length);
    expect(hashedBytes).toBe(neededBytes);
    // The bar still fills: cached files count as downloaded.
    expect(downloads.at(-1)).toBe(neededBytes);
  });

  it('keeps the bytes in memory when there is no cache to read them back from', async () => {
    const { io, log, net } = loggingIO(readFixture, null);
    const { hashedBytes } = await load(io);
    expect(log).toEqual(['read manifest.json', ...needed.map((p) => `read ${p}`)]);
    expect(net.calls).toHaveLength(needed.length + 1);
    expect(hashedBytes).toBe(neededBytes);
  });

  it('a corrupt cached graph or tokenizer is detected, evicted and downloaded again', async () => {
    const { caches, stores } = fakeCaches();
    g.caches = caches;
    await load(loggingIO().io);
    // Same size, one bit flipped: only the sha256 can tell.
    for (const file of ['transformer.onnx.data', 'tokenizer.json']) cachedCopy(stores, file).body[100] ^= 1;
    const { io, fetched } = loggingIO();
    await load(io);
    expect(fetched()).toEqual(['manifest.json', 'tokenizer.json', 'transformer.onnx.data']);
    for (const file of ['transformer.onnx.data', 'tokenizer.json']) expect(cachedCopy(stores, file).body).toEqual(readFixture(file));
    // Healed: the next load downloads nothing but the manifest.
    const third = loggingIO();
    await load(third.io);
    expect(third.fetched()).toEqual(['manifest.json']);
  });

  it('a partial cached graph is downloaded again in the download phase, before any upload', async () => {
    const { caches, stores } = fakeCaches();
    g.caches = caches;
    await load(loggingIO().io);
    const copy = cachedCopy(stores, 'decoder.onnx');
    copy.body = copy.body.slice(0, 1000);
    copy.headers = [['content-length', '1000']];
    const { io, log, fetched } = loggingIO();
    await load(io, log);
    expect(fetched()).toEqual(['manifest.json', 'decoder.onnx']);
    expect(log.indexOf('read decoder.onnx')).toBeLessThan(log.findIndex((l) => l.startsWith('upload')));
    expect(cachedCopy(stores, 'decoder.onnx').body).toEqual(readFixture('decoder.onnx'));
  });

  it('a cached graph that stays corrupt after downloading it again fails the load, naming the file', async () => {
    const { caches, stores } = fakeCaches();
    g.caches = caches;
    await load(loggingIO().io);
    cachedCopy(stores, 'head.onnx').body[10] ^= 1;
    // The server now serves a broken copy too.
    const broken = (p: string) => {
      const bytes = readFixture(p);
      if (p === 'head.onnx') bytes[10] ^= 1;
      return bytes;
    };
    const { io, fetched } = loggingIO(broken);
    const failure = load(io);
    await expect(failure).rejects.toMatchObject({ code: 'bad-package', message: expect.stringMatching(/^head\.onnx: sha256 is [0-9a-f]{64} but the manifest says/) });
    expect(fetched()).toEqual(['manifest.json', 'head.onnx']);
  });
});

describe('storage full while caching a model', () => {
  const base = 'https://host/models/tiny/';
  const needed = neededFiles(manifest, false);
  const bytesOf = (p: string) => manifest.files.find((f) => f.path === p)!.bytes;
  const MiB = 1024 * 1024;

  /** Cache Storage that takes entries up to `room` bytes in all; a write past it leaves half a body, then throws as browsers do. */
  function fullCaches(room: number) {
    const fake = fakeCaches();
    let used = 0;
    const open = fake.caches.open.bind(fake.caches);
    fake.caches.open = async (name: string) => {
      const cache = await open(name);
      const put = cache.put.bind(cache);
      cache.put = async (request: RequestInfo | URL, response: Response) => {
        const body = new Uint8Array(await response.arrayBuffer());
        if (used + body.length > room) {
          await put(request, new Response(body.slice(0, body.length >> 1), { headers: response.headers }));
          throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
        }
        used += body.length;
        await put(request, new Response(body, { headers: response.headers }));
      };
      return cache;
    };
    return fake;
  }

  it('loads the model all the same, names what was not kept with the sizes, and marks nothing partial as cached', async () => {
    const largest = [...needed].sort((a, b) => bytesOf(b) - bytesOf(a))[0];
    // Room for everything but the largest file.
    const { caches, stores } = fullCaches(needed.reduce((n, p) => n + bytesOf(p), 0) - bytesOf(largest) + manifestBytes);
    g.caches = caches;
    const ort = await importOrt('onnxruntime-node');
    const net = fakeFetch(base, readFixture);
    const storage = { estimate: async () => ({ usage: 1.5 * MiB, quota: 2 * MiB }) };
    const engine = await loadEngine(base, { ort, io: createFetchIO(base, { fetch: net.fetch, storage }) });
    try {
      expect(engine.info.storageWarning).toBe(
        `The browser's storage is full (this site uses 1.5 MB of the 2.0 MB the browser allows it): ${largest} (${formatBytes(bytesOf(largest))}) could not be kept for offline use. ` +
          'The model works now and is downloaded again next time; delete a downloaded model to make room.',
      );
      const generated = await engine.generate({ prompt: 'a red circle', seed: 1 });
      expect(generated.image.width).toBe(engine.info.imageSize);
    } finally {
      await engine.dispose();
    }
    // The half-written entry is gone: no partial copy, and the package is not offline-ready.
    const keys = [...stores.get('hart-web-models')!.keys()].map((k) => new URL(k).pathname.slice('/models/tiny/'.length));
    expect(keys).not.toContain(largest);
    expect(keys.length).toBe(needed.length);
    const [listed] = await listCachedModels();
    expect(listed).toMatchObject({ baseUrl: base, offline: false });
    // The next visit downloads exactly what was not kept.
    const next = fakeFetch(base, readFixture);
    const again = await loadEngine(base, { ort, io: createFetchIO(base, { fetch: next.fetch, storage }) });
    await again.dispose();
    expect(next.calls).toEqual([`${base}manifest.json`, `${base}${largest}`]);
  });

  it('says the storage is unavailable when writes fail for another reason', async () => {
    const { caches } = fakeCaches();
    const open = caches.open.bind(caches);
    caches.open = async (name: string) => Object.assign(await open(name), { put: async () => Promise.reject(new Error('storage is disabled')) });
    const net = fakeFetch(base, readFixture);
    const io = createFetchIO(base, { fetch: net.fetch, caches });
    const entry = manifest.files.find((f) => f.path === 'tokenizer.json')!;
    await io.read('tokenizer.json', { sha256: entry.sha256, bytes: entry.bytes });
    expect(await io.notKept?.()).toBe(`tokenizer.json (${formatBytes(entry.bytes)}) could not be kept for offline use (storage is disabled); the model works now and is downloaded again next time.`);
  });
});
