// Can this machine run this package? Answered from the manifest before any weight is
// downloaded: the download against the storage quota, the package's largest GPU buffers against
// the adapter's limits, and the features its graphs need. Pure: the caller gathers the facts
// (navigator.storage.estimate(), the adapter's limits) and passes them in.
import { GRAPH_NAMES, type Manifest } from './manifest';
import { graphVariant, neededFiles } from './modelPackage';
import type { BackendName } from './types';

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

/** Checks a package against this machine; see PreflightEnv for what the caller supplies. */
export function checkModelFits(manifest: Manifest, env: PreflightEnv): PreflightResult {
  const problems: string[] = [];
  const needed = neededFiles(manifest, env.fp16);
  const totalBytes = needed.reduce((n, path) => n + fileBytes(manifest, path), 0);
  const downloadBytes = needed.filter((path) => !env.cached?.has(path)).reduce((n, path) => n + fileBytes(manifest, path), 0);
  const browser = env.backend !== 'cpu';

  const { quota, usage } = env.storage ?? {};
  if (browser && quota !== undefined && downloadBytes > 0) {
    const free = Math.max(0, quota - (usage ?? 0));
    if (downloadBytes > free) {
      problems.push(
        `The model needs ${formatBytes(downloadBytes)} of browser storage but only ${formatBytes(free)} is free ` +
          `(quota ${formatBytes(quota)}, used ${formatBytes(usage ?? 0)}). Free disk space or delete cached models.`,
      );
    }
  }

  if (browser) {
    for (const path of needed) {
      const bytes = fileBytes(manifest, path);
      if (bytes > MAX_ARRAY_BUFFER_BYTES) {
        problems.push(`${path} is ${formatBytes(bytes)}, over the browser's ${formatBytes(MAX_ARRAY_BUFFER_BYTES)} limit for one file; the package must be exported in smaller shards.`);
      }
    }
  }

  if (needsShaderF16(manifest, env) && !(env.backend === 'webgpu' && env.shaderF16)) {
    problems.push(
      env.backend === 'webgpu'
        ? "The model's graphs compute in float16, which needs a WebGPU adapter with shader-f16; this adapter does not have it."
        : `The model's graphs compute in float16, which needs WebGPU with shader-f16; the ${env.backend} backend cannot run them.`,
    );
  }

  if (env.backend === 'webgpu' && env.gpuLimits) {
    const need = largestBuffer(manifest, env);
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
  }

  if (env.backend === 'wasm') {
    const weights = weightFiles(manifest, env.fp16).reduce((n, path) => n + fileBytes(manifest, path), 0);
    if (weights > WASM_HEAP_BYTES) {
      problems.push(`The model's weights take ${formatBytes(weights)}, more than the ${formatBytes(WASM_HEAP_BYTES)} WASM memory; it needs WebGPU.`);
    }
  }

  return { ok: problems.length === 0, problems, downloadBytes, totalBytes };
}
