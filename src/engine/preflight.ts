// Can this machine run this package? Answered from the manifest before any weight is
// downloaded: the download against the storage quota, the package's largest GPU buffers against
// the adapter's limits, and the features its graphs need. Pure: the caller gathers the facts
// (navigator.storage.estimate(), the adapter's limits) and passes them in.
import { GRAPH_NAMES, type Manifest } from './manifest';
import { graphVariant, neededFiles } from './modelPackage';
import type { BackendName } from './types';
import type { CatalogNeeds } from './catalog';

export interface GpuLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface PreflightEnv {
  backend: BackendName;
  /** The fp16 graph variants will be used. */
  fp16: boolean;
  /** The adapter has `shader-f16` (WebGPU only). */
  shaderF16?: boolean;
  /** The adapter's limits (WebGPU only). */
  gpuLimits?: GpuLimits;
  /** `navigator.storage.estimate()`, when the browser has it. */
  storage?: { quota?: number; usage?: number };
  /** Needed files that are already cached (a resumed download): they cost no download. */
  cached?: ReadonlySet<string>;
}

export interface PreflightResult {
  ok: boolean;
  /** Why the package cannot run here, in words for people; empty when ok. */
  problems: string[];
  /** Bytes still to download for the chosen variant (cached files excluded). */
  downloadBytes: number;
  /** Bytes of every file the chosen variant needs, cached or not. */
  totalBytes: number;
}

/** Chrome's cap on one ArrayBuffer (about 2 GB): each file is read into one. */
export const MAX_ARRAY_BUFFER_BYTES = 0x7fe00000;
/** The wasm32 heap holds every session's weights on the WASM backend. */
export const WASM_HEAP_BYTES = 4 * 1024 ** 3;

/**
 * Bytes for people, on the page and in preflight's messages alike: binary multiples (1024),
 * written B, KB, MB, GB.
 */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}

function fileBytes(manifest: Manifest, path: string): number {
  return manifest.files.find((f) => f.path === path)?.bytes ?? 0;
}

/** Weight files (graphs and their external data) of the variant the backend will run. */
function weightFiles(manifest: Manifest, fp16: boolean): string[] {
  return GRAPH_NAMES.flatMap((name) => {
    const variant = graphVariant(manifest, name, fp16);
    return [variant.path, ...(variant.externalData ?? [])];
  });
}

/**
 * The largest GPU buffer the variant needs. Declared by the exporter when present (it knows the
 * largest tensor, activations included); otherwise the largest weight file, which is a tight
 * bound because the exporter gives any tensor over a shard's size a shard of its own.
 */
function largestBuffer(manifest: Manifest, env: PreflightEnv): { bytes: number; what: string; binding: number } {
  const declared = manifest.requirements?.[env.fp16 ? 'fp16' : 'fp32'];
  if (declared?.maxBufferBytes !== undefined || declared?.maxBindingBytes !== undefined) {
    const bytes = declared.maxBufferBytes ?? declared.maxBindingBytes!;
    return { bytes, binding: declared.maxBindingBytes ?? bytes, what: 'its largest GPU buffer, as the package declares' };
  }
  let largest = { bytes: 0, path: '' };
  for (const path of weightFiles(manifest, env.fp16)) {
    const bytes = fileBytes(manifest, path);
    if (bytes > largest.bytes) largest = { bytes, path };
  }
  return { bytes: largest.bytes, binding: largest.bytes, what: `its largest weight file, ${largest.path}` };
}

/** True when the graphs the backend would run are stored in float16 although listed as fp32. */
function needsShaderF16(manifest: Manifest, env: PreflightEnv): boolean {
  if (manifest.requirements?.shaderF16) return true;
  if (env.fp16) return false;
  return weightFiles(manifest, false).some((path) => manifest.files.find((f) => f.path === path)?.dtype === 'float16');
}

/** The storage check: `bytes` to store against what the browser has left. */
function storageProblem(bytes: number, storage: PreflightEnv['storage']): string | undefined {
  const { quota, usage } = storage ?? {};
  if (quota === undefined || bytes <= 0) return undefined;
  const free = Math.max(0, quota - (usage ?? 0));
  if (bytes <= free) return undefined;
  return (
    `The model needs ${formatBytes(bytes)} of browser storage but only ${formatBytes(free)} is free ` +
    `(quota ${formatBytes(quota)}, used ${formatBytes(usage ?? 0)}). Free disk space or delete cached models.`
  );
}

function shaderF16Problem(env: PreflightEnv): string | undefined {
  if (env.backend === 'webgpu' && env.shaderF16) return undefined;
  return env.backend === 'webgpu'
    ? "The model's graphs compute in float16, which needs a WebGPU adapter with shader-f16; this adapter does not have it."
    : `The model's graphs compute in float16, which needs WebGPU with shader-f16; the ${env.backend} backend cannot run them.`;
}

function bufferProblems(need: { bytes: number; binding: number; what: string }, env: PreflightEnv): string[] {
  if (env.backend !== 'webgpu' || !env.gpuLimits) return [];
  const problems: string[] = [];
  const { maxBufferSize, maxStorageBufferBindingSize } = env.gpuLimits;
  if (need.bytes > maxBufferSize) {
    problems.push(`The model needs a GPU buffer of ${formatBytes(need.bytes)} (${need.what}) but this GPU allows at most ${formatBytes(maxBufferSize)} (maxBufferSize).`);
  }
  if (need.binding > maxStorageBufferBindingSize) {
    problems.push(
      `The model binds ${formatBytes(need.binding)} at once (${need.what}) but this GPU allows at most ` +
        `${formatBytes(maxStorageBufferBindingSize)} per binding (maxStorageBufferBindingSize).`,
    );
  }
  return problems;
}

function wasmHeapProblem(weights: number): string {
  return `The model's weights take ${formatBytes(weights)}, more than the ${formatBytes(WASM_HEAP_BYTES)} WASM memory; it needs WebGPU.`;
}

/** Checks a package against this machine; see PreflightEnv for what the caller supplies. */
export function checkModelFits(manifest: Manifest, env: PreflightEnv): PreflightResult {
  const problems: string[] = [];
  const needed = neededFiles(manifest, env.fp16);
  const totalBytes = needed.reduce((n, path) => n + fileBytes(manifest, path), 0);
  const downloadBytes = needed.filter((path) => !env.cached?.has(path)).reduce((n, path) => n + fileBytes(manifest, path), 0);
  const browser = env.backend !== 'cpu';

  const storage = browser ? storageProblem(downloadBytes, env.storage) : undefined;
  if (storage) problems.push(storage);

  if (browser) {
    for (const path of needed) {
      const bytes = fileBytes(manifest, path);
      if (bytes > MAX_ARRAY_BUFFER_BYTES) {
        problems.push(`${path} is ${formatBytes(bytes)}, over the browser's ${formatBytes(MAX_ARRAY_BUFFER_BYTES)} limit for one file; the package must be exported in smaller shards.`);
      }
    }
  }

  const f16 = needsShaderF16(manifest, env) ? shaderF16Problem(env) : undefined;
  if (f16) problems.push(f16);
  problems.push(...bufferProblems(largestBuffer(manifest, env), env));

  if (env.backend === 'wasm') {
    const weights = weightFiles(manifest, env.fp16).reduce((n, path) => n + fileBytes(manifest, path), 0);
    if (weights > WASM_HEAP_BYTES) problems.push(wasmHeapProblem(weights));
  }

  return { ok: problems.length === 0, problems, downloadBytes, totalBytes };
}

/**
 * Checks a model of the catalog against this machine before anything is fetched: what it keeps
 * against the storage left, and what it needs of the backend and the GPU.
 */
export function checkNeedsFit(needs: CatalogNeeds, diskBytes: number, env: Omit<PreflightEnv, 'fp16' | 'cached'>): PreflightResult {
  const full: PreflightEnv = { ...env, fp16: Boolean(needs.shaderF16 && env.shaderF16) };
  const problems: string[] = [];
  const storage = env.backend !== 'cpu' ? storageProblem(diskBytes, env.storage) : undefined;
  if (storage) problems.push(storage);
  if (needs.webgpu && env.backend !== 'webgpu') {
    problems.push(`The model needs WebGPU; this ${env.backend === 'cpu' ? 'runtime runs on the CPU' : 'browser runs it on WASM'}, which cannot hold it.`);
  }
  if (needs.shaderF16) {
    const f16 = shaderF16Problem(full);
    if (f16) problems.push(f16);
  }
  problems.push(...bufferProblems({ bytes: needs.gpuBufferBytes, binding: needs.gpuBufferBytes, what: 'its largest GPU buffer' }, full));
  return { ok: problems.length === 0, problems, downloadBytes: diskBytes, totalBytes: diskBytes };
}
