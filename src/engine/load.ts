// Loading: a model package onto a backend, wrapped as an `Engine`.
import { chooseBackend, limitWasmThreads, watchDeviceLoss, type AdapterLike, type BackendRequest, type GpuLike, type Ort } from './backend';
import { BadPackageError, EngineError, LOADING_CANCELLED, NoBackendError, throwIfCancelled, toEngineError } from './errors';
import { estimateStorage, type StorageManagerLike } from './cache';
import { platformLocks, withPackageLock, type LockManagerLike } from './locks';
import { createFetchIO, type FetchPolicy, type PackageIO } from './readers';
import { GRAPH_NAMES, MANIFEST_FILE, type GraphName, type Manifest } from './manifest';
import { fileEntries, graphVariant, neededFiles, readManifest, readTables, readVerified, verifiedOrReread } from './modelPackage';
import { checkModelFits, checkNeedsFit, type GpuLimits, type PreflightResult } from './preflight';
import type { CatalogNeeds } from './catalog';
import { generate, type LoadedModel, type PipelineOptions } from './pipeline';
import { SCALE_UPDATE_GPU_OUTPUTS, scaleTables } from './quantizer';
import { sharedQueue, type RunQueue } from './queue';
import { diffusionConstants } from './schedule';
import { createGraphSession, type GraphSession, type SessionContext } from './session';
import { PromptTokenizer } from './textEncoder';
import { transformerGpuOutputs } from './transformer';
import type { BackendInfo, BackendName, Engine, GenerateRequest, GenerateResult, LoadProgress, ModelInfo } from './types';

export interface LoadOptions {
  /** The ORT module: `onnxruntime-web/webgpu` in browsers, `onnxruntime-node` or `onnxruntime-web` in Node. */
  ort: Ort;
  /** How to read the package; a fetch-based reader of `source` (with Cache Storage) by default. */
  io?: PackageIO;
  /** Stall timeout and retries of that default reader (readers.ts FETCH_POLICY for the rest). */
  fetchPolicy?: Partial<FetchPolicy>;
  backend?: BackendRequest;
  /** `navigator.gpu` by default (tests inject a fake). */
  gpu?: GpuLike | null;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
  /** The queue every create and run goes through; one shared queue by default. */
  queue?: RunQueue;
  /**
   * Run one full generation while loading, so WebGPU compiles its shaders (at every scale's
   * shapes) before the first request. WASM and the CPU have no shaders: there the warm-up is
   * skipped and reported once as a 'warmup' progress with `skipped` set.
   */
  warmup?: boolean;
  /** `navigator.storage` by default (tests inject a fake; null: no storage check). */
  storage?: StorageManagerLike | null;
  /**
   * The Web Locks API that makes tabs loading the same package take turns at downloading it
   * (locks.ts): `navigator.locks` by default; null or absent (Node): no lock.
   */
  locks?: LockManagerLike | null;
  /** Check storage and GPU limits before downloading (default true); see preflight.ts. */
  preflight?: boolean;
  /**
   * Release the text encoder after each encoding and recreate it on the next request. By
   * default on when the text encoder's weights exceed TEXT_ENCODER_FREE_BYTES.
   */
  freeTextEncoderAfterUse?: boolean;
}

/** Above this size the text encoder is released after each use (Qwen2-1.5B int4 is ~1 GB). */
export const TEXT_ENCODER_FREE_BYTES = 256 * 1024 ** 2;

/** Whether to release the text encoder after each use: as asked, else when it is large. */
export function shouldFreeTextEncoder(manifest: Manifest, fp16: boolean, requested?: boolean): boolean {
  return requested ?? textEncoderBytes(manifest, fp16) > TEXT_ENCODER_FREE_BYTES;
}

/** Bytes of the text encoder graph (and its external data) the backend will load. */
export function textEncoderBytes(manifest: Manifest, fp16: boolean): number {
  const variant = graphVariant(manifest, 'textEncoder', fp16);
  return [variant.path, ...(variant.externalData ?? [])].reduce((n, path) => n + (manifest.files.find((f) => f.path === path)?.bytes ?? 0), 0);
}

/** Outputs each graph keeps on the GPU (WebGPU only): what only other graphs read. */
function gpuOutputs(name: GraphName, depth: number): string[] {
  if (name === 'transformer') return transformerGpuOutputs(depth);
  if (name === 'condition') return ['x', 'head_cond'];
  if (name === 'scaleUpdate') return SCALE_UPDATE_GPU_OUTPUTS;
  return [];
}

/** Whether a requested warm-up runs on this backend: only WebGPU has shaders to compile. */
export function warmupRuns(backend: BackendName): boolean {
  return backend === 'webgpu';
}

/** The adapter's limits and shader-f16, asked again of the same `navigator.gpu` backend choice used. */
async function adapterFacts(gpu: GpuLike | null | undefined): Promise<{ limits?: GpuLimits; shaderF16?: boolean }> {
  const source = gpu === undefined ? (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu : gpu;
  try {
    const adapter = (await source?.requestAdapter({ powerPreference: 'high-performance' })) as (AdapterLike & { limits?: Partial<GpuLimits> }) | null | undefined;
    if (!adapter) return {};
    const { maxBufferSize, maxStorageBufferBindingSize } = adapter.limits ?? {};
    const limits = maxBufferSize !== undefined && maxStorageBufferBindingSize !== undefined ? { maxBufferSize, maxStorageBufferBindingSize } : undefined;
    return { limits, shaderF16: adapter.features.has('shader-f16') };
  } catch {
    return {};
  }
}

/** Gathers this machine's facts and checks the package against them (preflight.ts). */
async function preflight(
  manifest: Manifest,
  io: PackageIO,
  backend: { backend: BackendName; fp16: boolean },
  options: Pick<LoadOptions, 'gpu' | 'storage'>,
): Promise<PreflightResult> {
  const gpu = backend.backend === 'webgpu' ? await adapterFacts(options.gpu) : {};
  const storage = options.storage === null ? undefined : await estimateStorage(options.storage);
  const cached = new Set<string>();
  if (io.isCached) {
    for (const path of neededFiles(manifest, backend.fp16)) {
      const entry = manifest.files.find((f) => f.path === path);
      if (entry && (await io.isCached(path, entry.sha256))) cached.add(path);
    }
  }
  return checkModelFits(manifest, { backend: backend.backend, fp16: backend.fp16, shaderF16: gpu.shaderF16, gpuLimits: gpu.limits, storage, cached });
}

export interface PackageCheck extends PreflightResult {
  backend: BackendInfo;
  name: string;
}

/**
 * Reads only the manifest of the package at `source` and says whether this machine can run it,
 * and how much is left to download: what a UI shows before the user starts a large download.
 */
export async function checkPackage(source: string, options: Pick<LoadOptions, 'ort' | 'io' | 'fetchPolicy' | 'backend' | 'gpu' | 'storage' | 'signal'>): Promise<PackageCheck> {
  try {
    const io = options.io ?? createFetchIO(source, { policy: options.fetchPolicy });
    const manifest = await readManifest(io, options.signal);
    const backend = await chooseBackend({ ort: options.ort, requested: options.backend ?? 'auto', gpu: options.gpu });
    const fits = await preflight(manifest, io, backend, options);
    return { ...fits, backend, name: manifest.name };
  } catch (error) {
    throw toEngineError(error);
  }
}

export interface NeedsCheck extends PreflightResult {
  backend: BackendInfo;
}

/**
 * Says whether this machine can run a model of the catalog that is not downloaded yet (one to
 * import): the backend it would get, the adapter's shader-f16 and limits, and the storage left.
 */
export async function checkNeeds(
  needs: CatalogNeeds,
  diskBytes: number,
  options: Pick<LoadOptions, 'ort' | 'backend' | 'gpu' | 'storage'>,
): Promise<NeedsCheck> {
  try {
    const backend = await chooseBackend({ ort: options.ort, requested: options.backend ?? 'auto', gpu: options.gpu });
    const gpu = backend.backend === 'webgpu' ? await adapterFacts(options.gpu) : {};
    const storage = options.storage === null ? undefined : await estimateStorage(options.storage);
    const fits = checkNeedsFit(needs, diskBytes, { backend: backend.backend, shaderF16: gpu.shaderF16, gpuLimits: gpu.limits, storage });
    return { ...fits, backend };
  } catch (error) {
    throw toEngineError(error);
  }
}

/**
 * Downloads every needed file, with one byte-progress over all of them, and returns the files
 * to keep in memory. A graph file that the IO caches is not kept: the upload phase reads it back
 * just before its session is created, so at most one graph's files are in memory at a time
 * instead of the whole package (2.7 GB at 1024 px, over what a browser tab can hold).
 *
 * Each file is read and verified (size and sha256) once per load, where its bytes are used. A
 * graph file the IO caches is verified when the upload phase reads it: here a cached copy is only
 * checked for presence and recorded size (no bytes read), and a freshly fetched one for its size.
 * The tokenizer, the tables and whatever the IO does not cache are verified here. A file failing
 * verification is evicted from the cache and fetched once more; a second failure is reported
 * naming the file.
 */
async function downloadFiles(
  io: PackageIO,
  manifest: Manifest,
  paths: string[],
  onProgress?: (progress: LoadProgress) => void,
  signal?: AbortSignal,
): Promise<Map<string, Uint8Array>> {
  const entries = fileEntries(manifest, paths);
  const small = new Set([manifest.tokenizer, ...Object.values(manifest.tables).map((t) => t.path)]);
  const total = entries.reduce((n, e) => n + e.bytes, 0);
  const files = new Map<string, Uint8Array>();
  let done = 0;
  for (const { path, sha256, bytes: size } of entries) {
    throwIfCancelled(signal, LOADING_CANCELLED);
    const report = (loaded: number) => onProgress?.({ phase: 'download', file: path, loaded: done + Math.min(loaded, size), total });
    const read = () => io.read(path, { sha256, bytes: size, signal, onProgress: report });
    const deferred = !small.has(path) && io.isCached !== undefined;
    const cached = async () => deferred && (await io.isCached!(path, sha256, size));
    if (!(await cached())) {
      // A copy of the wrong size (a partial one) is dropped and downloaded again.
      if (deferred) await io.evict?.(path, sha256);
      const bytes = await read();
      // Fetched whole and now in the cache: the upload phase verifies it when it reads it back.
      if (!(bytes.length === size && (await cached()))) files.set(path, await verifiedOrReread(io, manifest, path, bytes, read));
    }
    done += size;
    onProgress?.({ phase: 'download', file: path, loaded: done, total });
  }
  return files;
}

/** Loads and verifies a package and creates its sessions: what the pipeline runs on. */
export async function loadModel(source: string, options: LoadOptions): Promise<LoadedModel> {
  const { ort, signal, onProgress } = options;
  const io = options.io ?? createFetchIO(source, { policy: options.fetchPolicy });
  const queue = options.queue ?? sharedQueue;

  onProgress?.({ phase: 'manifest', file: MANIFEST_FILE, loaded: 0, total: 1 });
  const manifest = await readManifest(io, signal);
  onProgress?.({ phase: 'manifest', file: MANIFEST_FILE, loaded: 1, total: 1 });

  const backend = await chooseBackend({ ort, requested: options.backend ?? 'auto', gpu: options.gpu });
  // Without cross-origin isolation, one WASM thread (the reason says so); set before any session.
  limitWasmThreads(ort);
  if (options.preflight !== false) {
    const fits = await preflight(manifest, io, backend, options);
    if (!fits.ok) throw new NoBackendError(`${manifest.name} cannot run here (${backend.backend}): ${fits.problems.join(' ')}`);
  }
  // Said as soon as the backend is known, so a progress display never waits on a phase that won't run.
  if (options.warmup && !warmupRuns(backend.backend)) {
    const where = backend.backend === 'wasm' ? 'WASM' : 'the CPU';
    onProgress?.({ phase: 'warmup', loaded: 0, total: 0, skipped: `no shaders to compile on ${where}` });
  }
  // Only a reader that caches can hand another tab's download over: the others need no lock.
  const locks = io.isCached ? (options.locks === undefined ? platformLocks() : (options.locks ?? undefined)) : undefined;
  const files = await withPackageLock(locks, io.location, signal, () => downloadFiles(io, manifest, neededFiles(manifest, backend.fp16), onProgress, signal));

  const tables = readTables(manifest, files);
  let tokenizerJson: unknown;
  try {
    tokenizerJson = JSON.parse(new TextDecoder().decode(files.get(manifest.tokenizer)!));
  } catch (error) {
    throw new BadPackageError(`is not valid JSON (${(error as Error).message})`, manifest.tokenizer, { cause: error });
  }
  const tokenizer = new PromptTokenizer(tokenizerJson as object, manifest.textEncoder, manifest.tokenizer);

  const context: SessionContext = { ort, backend: backend.backend, queue };
  const freeTextEncoder = shouldFreeTextEncoder(manifest, backend.fp16, options.freeTextEncoderAfterUse);
  const sessions = {} as Record<GraphName, GraphSession>;
  try {
    for (const [i, name] of GRAPH_NAMES.entries()) {
      throwIfCancelled(signal, LOADING_CANCELLED);
      const variant = graphVariant(manifest, name, backend.fp16);
      const source = (bytes: Map<string, Uint8Array>) => ({
        path: variant.path,
        bytes: bytes.get(variant.path)!,
        externalData: (variant.externalData ?? []).map((path) => ({ path, data: bytes.get(path)! })),
      });
      // A suspended text encoder is read again from the package (Cache Storage when fetched),
      // verified like the first time, rather than kept in memory.
      const reload =
        name === 'textEncoder' && freeTextEncoder
          ? async () => source(await readVerified(io, manifest, [variant.path, ...(variant.externalData ?? [])]))
          : undefined;
      onProgress?.({ phase: 'upload', file: variant.path, loaded: i, total: GRAPH_NAMES.length });
      const paths = [variant.path, ...(variant.externalData ?? [])];
      const missing = paths.filter((path) => !files.has(path));
      if (missing.length) for (const [path, bytes] of await readVerified(io, manifest, missing, undefined, signal)) files.set(path, bytes);
      sessions[name] = await createGraphSession(context, name, source(files), gpuOutputs(name, manifest.model.depth), reload);
      // The session holds its own copy of the weights now.
      files.delete(variant.path);
      variant.externalData?.forEach((path) => files.delete(path));
    }
    onProgress?.({ phase: 'upload', loaded: GRAPH_NAMES.length, total: GRAPH_NAMES.length });
  } catch (error) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    throw error;
  }

  const { diffusion } = manifest.model;
  const model: LoadedModel = {
    ort,
    manifest,
    backend,
    sessions,
    tokenizer,
    scaleTables: scaleTables(manifest.model, tables),
    codebook: tables.get('codebook')!,
    diffusion: diffusionConstants(diffusion.steps, diffusion.trainSteps, diffusion.schedule),
    freeTextEncoderAfterUse: freeTextEncoder,
  };
  if (manifest.graphs.encoder) {
    // Created on first use, like a suspended text encoder: read from the package (Cache Storage
    // when fetched) and verified, then kept with the other sessions (and released with them).
    let creating: Promise<GraphSession> | undefined;
    model.encoder = () =>
      (creating ??= (async () => {
        const variant = graphVariant(manifest, 'encoder', backend.fp16);
        const bytes = await readVerified(io, manifest, [variant.path, ...(variant.externalData ?? [])]);
        const session = await createGraphSession(context, 'encoder', {
          path: variant.path,
          bytes: bytes.get(variant.path)!,
          externalData: (variant.externalData ?? []).map((path) => ({ path, data: bytes.get(path)! })),
        });
        (model.sessions as Record<string, GraphSession>).encoder = session;
        return session;
      })().catch((error) => {
        creating = undefined;
        throw error;
      }));
  }
  if (backend.backend === 'webgpu') watchDeviceLoss(ort, (message) => (model.deviceLost = message));
  return model;
}

/** An Engine that also exposes its loaded model and the pipeline's test hooks (trace, forced tokens). */
export interface LoadedEngine extends Engine {
  readonly model: LoadedModel;
  generate(request: GenerateRequest, options?: PipelineOptions): Promise<GenerateResult>;
}

export function modelInfo(model: LoadedModel): ModelInfo {
  const { manifest } = model;
  return {
    name: manifest.name,
    description: manifest.description,
    imageSize: manifest.model.imageSize,
    scales: [...manifest.model.patchNums],
    defaults: { ...manifest.sampling },
    examples: [...manifest.examples],
    backend: { ...model.backend },
    vocabulary: model.tokenizer.vocabulary(),
    imageToImage: model.encoder !== undefined,
  };
}

/** How long a failed WebGPU run waits for the device to report its loss before failing as it is. */
const DEVICE_LOSS_GRACE_MS = 200;

function deviceLostError(reason: string): EngineError {
  return new EngineError('device-lost', `The GPU stopped working (its WebGPU device was lost: ${reason.replace(/\.$/, '')}); the model must be loaded again.`);
}

/** Wraps a loaded model as an `Engine`: the object the worker, the CLI and tests use. */
export function createEngine(model: LoadedModel): LoadedEngine {
  let disposed = false;
  const info = modelInfo(model);
  // Settles when ORT's WebGPU device is lost: a run under way then fails at once instead of
  // waiting on a GPU that will never answer.
  const lost =
    model.backend.backend === 'webgpu'
      ? new Promise<string>((resolve) =>
          watchDeviceLoss(model.ort, (message) => {
            model.deviceLost ??= message;
            resolve(message);
          }),
        )
      : undefined;
  return {
    info,
    model,
    analyzePrompt: (prompt: string) => model.tokenizer.analyze(prompt),
    async generate(request: GenerateRequest, options?: PipelineOptions): Promise<GenerateResult> {
      if (disposed) throw new EngineError('internal', 'This engine was disposed; load the model again.');
      if (model.deviceLost) throw deviceLostError(model.deviceLost);
      const run = generate(model, request, options);
      try {
        if (!lost) return await run;
        run.catch(() => undefined);
        return await Promise.race([run, lost.then((message) => Promise.reject(deviceLostError(message)))]);
      } catch (error) {
        // A run on a lost device may fail with its own error (a buffer that cannot be mapped, an
        // AbortError) a moment before the device reports the loss: wait briefly for that report,
        // so the failure is named for what it is.
        if (lost && !model.deviceLost) await Promise.race([lost, new Promise((resolve) => setTimeout(resolve, DEVICE_LOSS_GRACE_MS))]);
        if (model.deviceLost) throw deviceLostError(model.deviceLost);
        throw toEngineError(error);
      }
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await Promise.all(Object.values(model.sessions).map((s) => s.release()));
    },
  };
}

/**
 * Loads the package at `source` (a URL, or with `options.io` any location) and returns a ready
 * engine. Every failure is an EngineError with a code and a message for people.
 */
export async function loadEngine(source: string, options: LoadOptions): Promise<LoadedEngine> {
  let engine: LoadedEngine | undefined;
  // The IO is made here so that what it could not keep for offline use can be reported.
  const io = options.io ?? createFetchIO(source, { policy: options.fetchPolicy });
  try {
    engine = createEngine(await loadModel(source, { ...options, io }));
    const storageWarning = await io.notKept?.();
    if (storageWarning) engine.info.storageWarning = storageWarning;
    if (options.warmup && warmupRuns(engine.model.backend.backend)) {
      const count = engine.info.scales.length;
      options.onProgress?.({ phase: 'warmup', loaded: 0, total: count });
      await engine.generate(
        { prompt: engine.info.examples[0] ?? 'a', seed: 0 },
        {
          signal: options.signal,
          onEvent: (event) => {
            if (event.type === 'scale') options.onProgress?.({ phase: 'warmup', loaded: event.index + 1, total: count });
          },
        },
      );
    }
    return engine;
  } catch (error) {
    await engine?.dispose();
    throw toEngineError(error);
  }
}
