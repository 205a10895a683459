// The app's import (importModelToCache) against a local hub that serves the stand-in published
// files as Hugging Face does: the package in the cache equals the converter's, a retry keeps
// what the last try finished, and each fault of the hub ends in one message naming the file.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFetchIO, importModelToCache, listCachedModels, type CatalogEntry, type ImportModelProgress } from '../../../src/engine/index';
import { fakeCaches } from '../fakeCaches';
import { startHub, type Hub } from './hubServer.mjs';
import { convertedPreview, publishedFixture, type Fixture } from './published';

let fixture: Fixture;
let hub: Hub;
const APP = 'http://app.test/hart/';
const HART = 'mit-han-lab/hart-0.7b-1024px';
const QWEN = 'mit-han-lab/Qwen2-VL-1.5B-Instruct';

beforeAll(async () => {
  fixture = publishedFixture();
  hub = await startHub({ repos: { [HART]: fixture.hart, [QWEN]: fixture.qwen }, static: { '/skeleton/': fixture.skeleton('plain'), '/skeleton-fp16/': fixture.skeleton('fp16') } });
}, 1_800_000);
afterAll(() => hub?.close());

function source(): Extract<CatalogEntry['source'], { kind: 'import' }> {
  return { kind: 'import', hart: `${hub.url}/${HART}`, qwen: `${hub.url}/${QWEN}`, skeleton: `${hub.url}/skeleton/` };
}

function run(caches: CacheStorage, extra: Partial<Parameters<typeof importModelToCache>[0]> = {}) {
  return importModelToCache({
    id: 'stand-in',
    source: source(),
    appBase: APP,
    caches,
    preview: convertedPreview(fixture, 'fp32'),
    policy: { retryDelayMs: 1, stallTimeoutMs: 10_000 },
    // The stand-in's files are a thousandth of the published ones: so is the read-ahead block.
    readAheadBytes: 16 << 10,
    ...extra,
  });
}

/** The files of the cached package, by path (the manifest without a sha256). */
function cachedFiles(stores: ReturnType<typeof fakeCaches>['stores']): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const [key, entry] of stores.get('hart-web-models') ?? []) {
    const url = new URL(key);
    const file = url.pathname.slice(new URL(`${APP}imported/stand-in/`).pathname.length);
    if (url.searchParams.has('writing')) throw new Error(`left over: ${key}`);
    if (file !== 'import.json') files.set(file, Buffer.from(entry.body));
  }
  return files;
}

function expectConverted(files: Map<string, Buffer>): void {
  const converted = fixture.converted('fp32');
  expect([...files.keys()].sort()).toEqual(readdirSync(converted).sort());
  for (const name of readdirSync(converted)) expect(files.get(name)!.equals(readFileSync(path.join(converted, name))), name).toBe(true);
}

describe('import from a hub into the package cache', () => {
  it('writes the converter\'s package, listed once complete, and a second import reads no weights again', async () => {
    const { caches, stores } = fakeCaches();
    hub.served.clear();
    const progress: ImportModelProgress[] = [];
    const result = await run(caches, { onProgress: (p) => progress.push(p) });
    expect(result.url).toBe(`${APP}imported/stand-in/`);
    expectConverted(cachedFiles(stores));
    // Every manifest file is stored under the sha256 the fetch IO looks it up by.
    const manifest = JSON.parse(cachedFiles(stores).get('manifest.json')!.toString('utf8'));
    const keys = [...stores.get('hart-web-models')!.keys()];
    for (const file of manifest.files) expect(keys).toContain(`${result.url}${file.path}?sha256=${file.sha256}`);
    const listed = await listCachedModels({ caches });
    expect(listed).toMatchObject([{ baseUrl: result.url, offline: true }]);
    // A load of that URL reads it all from the cache, even where the server answers its
    // manifest with a page (a dev server's fallback): nothing is fetched.
    const asked: string[] = [];
    const page: typeof fetch = async (input) => {
      asked.push(String(input));
      return new Response('<!doctype html>', { headers: { 'content-type': 'text/html' } });
    };
    const io = createFetchIO(result.url, { caches, fetch: page });
    expect(new TextDecoder().decode(await io.read('manifest.json'))).toBe(result.manifest);
    const first = manifest.files[0];
    expect((await io.read(first.path, { sha256: first.sha256 })).length).toBe(first.bytes);
    expect(asked).toEqual([]);
    // The redirect to the CDN path was followed: all bytes came from /cdn/.
    expect(hub.requests.some((r) => r.path.startsWith(`/${HART}/resolve/main/`))).toBe(true);
    expect(hub.bytesServed(`${HART}/llm/ema_model.bin`) + hub.bytesServed(`${HART}/llm/model.safetensors`)).toBeGreaterThan(0);
    expect(new Set(progress.map((p) => p.phase))).toEqual(new Set(['download', 'verify']));
    expect(progress.filter((p) => p.phase === 'download' && p.done === p.total).at(-1)?.file).toBe('manifest.json');

    const before = hub.bytesServed();
    hub.served.clear();
    const again = await run(caches);
    expect(again.kept.length).toBe(result.files.length);
    expectConverted(cachedFiles(stores));
    // Configs, tokenizer and checkpoint headers only: not the weights.
    expect(hub.bytesServed()).toBeLessThan(before / 4);
  }, 300_000);

  it('resumes after a cancel: the files finished before are kept, the rest is read', async () => {
    const { caches, stores } = fakeCaches();
    const controller = new AbortController();
    const finished = new Set<string>();
    const failed = await run(caches, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done === p.total) finished.add(p.file);
        if (finished.size >= 3) controller.abort();
      },
    }).then(() => null, (e: Error) => e);
    expect(failed?.message).toBe('Loading was cancelled.');
    expect(cachedFiles(stores).has('manifest.json')).toBe(false);
    expect(await listCachedModels({ caches })).toEqual([]);
    hub.served.clear();
    const result = await run(caches);
    expect(result.kept.length).toBeGreaterThan(0);
    expect(result.kept.length).toBeLessThan(result.files.length);
    expectConverted(cachedFiles(stores));
  }, 300_000);

  it('keeps nothing of an import made from another skeleton', async () => {
    const { caches } = fakeCaches();
    const controller = new AbortController();
    await run(caches, { signal: controller.signal, onProgress: (p) => p.done === p.total && p.index >= 3 && controller.abort() }).catch(() => undefined);
    const other = await run(caches, { source: { ...source(), skeleton: `${hub.url}/skeleton-fp16/` }, preview: convertedPreview(fixture, 'fp16') });
    expect(other.kept).toEqual([]);
    const again = await run(caches, { source: { ...source(), skeleton: `${hub.url}/skeleton-fp16/` }, preview: convertedPreview(fixture, 'fp16') });
    expect(again.kept.length).toBe(other.files.length);
  }, 300_000);

  it('resumes a cut transfer from the bytes it lacks', async () => {
    const { caches, stores } = fakeCaches();
    const file = `${QWEN}/model.safetensors`;
    hub.served.clear();
    await run(caches);
    const clean = hub.bytesServed(file);
    const { caches: fresh, stores: freshStores } = fakeCaches();
    hub.served.clear();
    hub.requests.length = 0;
    hub.fault(file, { kind: 'cut', after: 4096 });
    await run(fresh);
    hub.clearFaults();
    expectConverted(cachedFiles(freshStores));
    expect(cachedFiles(stores).size).toBe(cachedFiles(freshStores).size);
    // The cut request's 4096 bytes are not asked again: the retry starts where they ended.
    expect(hub.bytesServed(file)).toBe(clean);
    const ranges = hub.requests.filter((r) => r.path === `/cdn/${file}`).map((r) => r.range);
    const cut = ranges.findIndex((r, i) => ranges.indexOf(r) !== i || /bytes=(\d+)-/.exec(ranges[i + 1] ?? '')?.[1] === String(Number(/bytes=(\d+)-/.exec(r)![1]) + 4096));
    expect(ranges[cut + 1]).toBe(ranges[cut].replace(/bytes=(\d+)-/, (_, s) => `bytes=${Number(s) + 4096}-`));
  }, 300_000);

  it.each([
    ['a missing file', `${HART}/tokenizer/config.json`, { kind: 'missing' as const }, /^http:\/\/127\.0\.0\.1:\d+\/mit-han-lab\/hart-0\.7b-1024px\/resolve\/main\/tokenizer\/config\.json: missing file$/],
    ['a server error that lasts', `${HART}/llm/config.json`, { kind: 'error' as const, times: 100 }, /llm\/config\.json: the server answered 500 Internal Server Error for .*\/resolve\/main\/llm\/config\.json; gave up after 3 tries/],
    ['a connection cut on every try', `${QWEN}/model.safetensors`, { kind: 'cut' as const, after: 10, times: 100 }, /model\.safetensors: the download from .*\/resolve\/main\/model\.safetensors broke off .*; gave up after 3 tries/],
    ['a truncated file', `${QWEN}/model.safetensors`, { kind: 'truncate' as const, bytes: 5000 }, /Qwen2-VL-1\.5B-Instruct\/resolve\/main\/model\.safetensors/],
    ['a wrong config value', `${HART}/tokenizer/config.json`, { kind: 'config' as const, values: { quant_conv_ks: 1 } }, /tokenizer\/config\.json.*quant_conv_ks/],
  ])('names the file for %s', async (_, key, fault, message) => {
    const { caches } = fakeCaches();
    hub.fault(key, fault);
    const error = await run(caches).then(() => null, (e: Error) => e);
    hub.clearFaults();
    expect(error).not.toBeNull();
    expect(error!.message.split('\n')).toHaveLength(1);
    expect(error!.message).toMatch(message);
    expect(await listCachedModels({ caches })).toEqual([]);
  }, 300_000);

  it('says in one line that the skeleton is missing', async () => {
    const { caches } = fakeCaches();
    const error = await importModelToCache({ id: 'x', source: { ...source(), skeleton: `${hub.url}/no-skeleton/` }, appBase: APP, caches }).then(() => null, (e: Error) => e);
    expect(error?.message).toBe(`This model's skeleton is not available at ${hub.url}/no-skeleton/ (this copy of the app does not ship it; it is made with tools/py convert.skeleton, see docs/convert.md)`);
  });
});
