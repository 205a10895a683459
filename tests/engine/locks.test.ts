// Two tabs loading the same package at once share one download: the second waits for the
// package's Web Lock, then reads the files the first cached. Web Locks are faked here (one
// exclusive queue per lock name, as navigator.locks keeps them).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadEngine } from '../../src/engine/index';
import { packageLockName, type LockManagerLike } from '../../src/engine/locks';
import { parseManifest } from '../../src/engine/manifest';
import { neededFiles } from '../../src/engine/modelPackage';
import { createFetchIO } from '../../src/engine/readers';
import { fakeCaches, fakeFetch } from './fakeCaches';
import { FIXTURE, importOrt } from './golden';

const g = globalThis as { caches?: CacheStorage };
afterEach(() => {
  delete g.caches;
});

const readFixture = (file: string) => new Uint8Array(readFileSync(path.join(FIXTURE, ...file.split('/'))));
const manifest = parseManifest(JSON.parse(readFileSync(path.join(FIXTURE, 'manifest.json'), 'utf8')));
const base = 'https://host/models/tiny/';

/** Exclusive locks by name; records each grant. A wait aborted by its signal rejects with an AbortError. */
function fakeLocks() {
  const tails = new Map<string, Promise<unknown>>();
  const granted: string[] = [];
  const locks: LockManagerLike = {
    request(name, options, callback) {
      const before = tails.get(name) ?? Promise.resolve();
      const run = new Promise<unknown>((resolve, reject) => {
        const abort = () => reject(new DOMException('The lock request was aborted.', 'AbortError'));
        options.signal?.addEventListener('abort', abort, { once: true });
        before.then(() => {
          options.signal?.removeEventListener('abort', abort);
          if (options.signal?.aborted) return abort();
          granted.push(name);
          callback().then(resolve, reject);
        });
      });
      tails.set(name, run.catch(() => undefined));
      return run as ReturnType<typeof callback>;
    },
  };
  return { locks, granted };
}

/** Two loads of the same package at once, each with its own reader (two tabs), one network and one Cache Storage. */
async function twoTabs(locks: LockManagerLike | null) {
  const { caches } = fakeCaches();
  g.caches = caches;
  const ort = await importOrt('onnxruntime-node');
  const net = fakeFetch(base, readFixture);
  // A network that takes a moment, so the two loads overlap as they do over a real one.
  const slow = (async (url: string) => (await new Promise((resolve) => setTimeout(resolve, 5)), net.fetch(url))) as typeof fetch;
  const tab = () => loadEngine(base, { ort, locks, io: createFetchIO(base, { fetch: slow }) });
  const engines = await Promise.all([tab(), tab()]);
  await Promise.all(engines.map((e) => e.dispose()));
  const counts = new Map<string, number>();
  for (const url of net.calls) counts.set(url.slice(base.length), (counts.get(url.slice(base.length)) ?? 0) + 1);
  return counts;
}

describe('two tabs loading the same package', () => {
  it('download each file once: the second waits for the lock and reads the cache', async () => {
    const { locks, granted } = fakeLocks();
    const counts = await twoTabs(locks);
    expect(counts.get('manifest.json')).toBe(2); // each tab reads the manifest fresh
    for (const file of neededFiles(manifest, false)) expect(counts.get(file), file).toBe(1);
    expect(granted).toEqual([packageLockName(base), packageLockName(base)]);
  });

  it('without Web Locks (Node) both loads still finish, each downloading for itself', async () => {
    const counts = await twoTabs(null);
    expect(neededFiles(manifest, false).filter((file) => counts.get(file) === 2)).not.toEqual([]);
  });

  it('a tab waiting for the lock stops at once when its load is cancelled', async () => {
    const { caches } = fakeCaches();
    g.caches = caches;
    const ort = await importOrt('onnxruntime-node');
    const { locks } = fakeLocks();
    let release!: () => void;
    // Another tab holds the lock and does not let go.
    void locks.request(packageLockName(base), {}, () => new Promise<void>((resolve) => (release = resolve)));
    const controller = new AbortController();
    const net = fakeFetch(base, readFixture);
    const waiting = loadEngine(base, {
      ort,
      locks,
      signal: controller.signal,
      io: createFetchIO(base, { fetch: net.fetch }),
      onProgress: (p) => {
        if (p.phase === 'manifest' && p.loaded === 1) setTimeout(() => controller.abort(), 20);
      },
    });
    await expect(waiting).rejects.toMatchObject({ code: 'cancelled', message: 'Loading was cancelled.' });
    expect(net.calls.map((u) => u.slice(base.length))).toEqual(['manifest.json']);
    release();
  });
});
