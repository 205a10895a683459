// The app's import of a catalog entry: the published checkpoint read from its hub over HTTP
// ranges, the skeleton from the app's server, the package written into the engine's package
// cache under `<app>/imported/<id>/`, then read back and checked against its hashes. Loading
// that URL afterwards is an ordinary load from the cache.
import type { Ort } from '../backend';
import type { ImportSource } from '../catalog';
import { deleteCachedModel } from '../cache';
import { CheckpointError, EngineError, LOADING_CANCELLED, throwIfCancelled } from '../errors';
import { importedPackageUrl, MODEL_CACHE_NAME, type FetchPolicy } from '../readers';
import type { BackendName } from '../types';
import { createCacheSink, dropUnfinished } from './cacheSink';
import { importPackage, type ImportResult } from './importer';
import type { PreviewMap } from './previewFit';
import { sha256Hasher } from './sink';
import { WEIGHT_MAP_FILE } from './skeleton';
import { createHttpSource, readAll, readJson, type Source } from './source';

export type ImportPhase = 'download' | 'verify';

export interface ImportModelProgress {
  /** download: published files read, converted and written; verify: the written files read back. */
  phase: ImportPhase;
  /** The package file being written or checked, its index and the number of files. */
  file: string;
  index: number;
  count: number;
  /** Bytes of that file done, of its total. */
  done: number;
  total: number;
  /** This file's rate so far, and the seconds it still needs at that rate (undefined at first). */
  bytesPerSecond?: number;
  secondsLeft?: number;
}

export interface ImportModelOptions {
  /** The catalog entry's id: the package goes to `<appBase>imported/<id>/`. */
  id: string;
  source: ImportSource;
  /** The app's own address (its base URL). */
  appBase: string;
  /** onnxruntime, to fit the preview map against the package's decoder. */
  ort?: Ort;
  /** A preview map to use instead of fitting one (tests compare with the converter's). */
  preview?: PreviewMap;
  backend?: BackendName;
  fetch?: typeof fetch;
  policy?: Partial<FetchPolicy>;
  /** The HTTP sources' read-ahead block (see HttpSourceOptions); tests of small files shrink it. */
  readAheadBytes?: number;
  caches?: CacheStorage;
  onProgress?: (progress: ImportModelProgress) => void;
  onLog?: (line: string) => void;
  signal?: AbortSignal;
}

export interface ImportModelResult extends ImportResult {
  /** The package URL to load. */
  url: string;
}

/** A repository URL of a hub: its origin serves it as Hugging Face does. */
function hubSource(url: string, options: ImportModelOptions): Source {
  return createHttpSource(url, { hub: new URL(url).origin, fetch: options.fetch, policy: options.policy, readAheadBytes: options.readAheadBytes });
}

/** At most one report per file every PROGRESS_MS, and every file's first and last. */
const PROGRESS_MS = 200;

function rateReporter(phase: ImportPhase, onProgress?: (p: ImportModelProgress) => void) {
  let file = '';
  let started = 0;
  let last = 0;
  return (p: { file: string; index: number; count: number; done: number; total: number }) => {
    if (!onProgress) return;
    const now = Date.now();
    if (p.file !== file) {
      file = p.file;
      started = now;
      last = 0;
    }
    if (p.done !== p.total && p.done !== 0 && now - last < PROGRESS_MS) return;
    last = now;
    const seconds = (now - started) / 1000;
    const bytesPerSecond = seconds > 0.05 && p.done > 0 ? p.done / seconds : undefined;
    const secondsLeft = bytesPerSecond ? (p.total - p.done) / bytesPerSecond : undefined;
    onProgress({ phase, ...p, bytesPerSecond, secondsLeft });
  };
}

/**
 * The skeleton must be served: without it nothing can be imported, so say so in one line.
 * Returns its weight map's sha256.
 */
async function checkSkeleton(skeleton: Source, signal?: AbortSignal): Promise<string> {
  try {
    await readJson(skeleton, WEIGHT_MAP_FILE, signal);
    const hash = sha256Hasher();
    hash.update(await readAll(skeleton, WEIGHT_MAP_FILE, signal));
    return hash.hex();
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    throw new CheckpointError(
      `This model's skeleton is not available at ${skeleton.location} (this copy of the app does not ship it; it is made with tools/py convert.skeleton, see docs/convert.md)`,
    );
  }
}

/** What an import was made from, kept beside its files (`<package>/import.json`). */
const STAMP_FILE = 'import.json';

/**
 * Files a previous import left are kept only when it read the same repositories with the same
 * weight map: anything else (another skeleton, another checkpoint) starts afresh.
 */
async function startFrom(url: string, stamp: string, caches?: CacheStorage): Promise<void> {
  const storage = caches ?? (globalThis as { caches?: CacheStorage }).caches;
  if (!storage) return;
  const cache = await storage.open(MODEL_CACHE_NAME);
  const key = new URL(STAMP_FILE, url).href;
  const previous = await cache.match(key);
  if (previous && (await previous.text()) === stamp) return;
  await deleteCachedModel(url, { caches: storage });
  await cache.put(key, new Response(stamp, { headers: { 'content-type': 'application/json', 'content-length': String(new TextEncoder().encode(stamp).length) } }));
}

export async function importModelToCache(options: ImportModelOptions): Promise<ImportModelResult> {
  const { signal } = options;
  const url = importedPackageUrl(options.appBase, options.id);
  const skeleton = createHttpSource(options.source.skeleton, { fetch: options.fetch, policy: options.policy, readAheadBytes: options.readAheadBytes });
  const weightMap = await checkSkeleton(skeleton, signal);
  await dropUnfinished(url, { caches: options.caches });
  await startFrom(url, JSON.stringify({ hart: options.source.hart, qwen: options.source.qwen, weightMap }), options.caches);
  const sink = createCacheSink(url, { caches: options.caches });
  const result = await importPackage({
    skeleton,
    hart: hubSource(options.source.hart, options),
    qwen: hubSource(options.source.qwen, options),
    sink,
    ort: options.ort,
    preview: options.preview,
    backend: options.backend,
    onProgress: rateReporter('download', options.onProgress),
    onLog: options.onLog,
    signal,
  });

  // Every file read back from the cache and hashed: what a load will read is what was written.
  const verify = rateReporter('verify', options.onProgress);
  const count = result.files.length;
  for (const [index, file] of result.files.entries()) {
    const hash = sha256Hasher();
    let done = 0;
    verify({ file: file.path, index, count, done, total: file.bytes });
    for await (const chunk of sink.chunks(file.path)) {
      throwIfCancelled(signal, LOADING_CANCELLED);
      hash.update(chunk);
      done += chunk.length;
      verify({ file: file.path, index, count, done, total: file.bytes });
    }
    if (done !== file.bytes || hash.hex() !== file.sha256) {
      // Not a package to list or load: all of it goes, the next import starts afresh.
      await deleteCachedModel(url, { caches: options.caches });
      throw new EngineError('internal', `${file.path}: the copy in this browser's storage differs from what was written (${url}); import it again`);
    }
  }
  return { ...result, url };
}
