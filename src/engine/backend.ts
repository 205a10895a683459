// Choosing where the graphs run. The ORT module is injected (onnxruntime-web in browsers and in
// Node tests, onnxruntime-node in the CLI), so this file imports no runtime itself.
import { NoBackendError } from './errors';
import type { BackendInfo, BackendName } from './types';

export type Ort = typeof import('onnxruntime-common');

export type BackendRequest = 'auto' | BackendName;

/** The part of `navigator.gpu` that backend choice needs (injectable for tests). */
export interface GpuLike {
  requestAdapter(options?: { powerPreference?: 'low-power' | 'high-performance' }): Promise<AdapterLike | null>;
}

export interface AdapterLike {
  features: { has(name: string): boolean };
  info?: { architecture?: string; vendor?: string; description?: string; isFallbackAdapter?: boolean };
  /** Older Chromium put the flag on the adapter itself. */
  isFallbackAdapter?: boolean;
}

/** True when `ort` is onnxruntime-node (its env reports a `node` version). */
export function isNodeRuntime(ort: Ort): boolean {
  const versions = (ort.env as { versions?: Record<string, string | undefined> }).versions;
  return Boolean(versions?.node);
}

function defaultGpu(): GpuLike | undefined {
  return (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
}

function adapterName(adapter: AdapterLike): string {
  const info = adapter.info ?? {};
  return [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
}

/** A software rasteriser (SwiftShader) or a fallback adapter: far slower than WASM. */
export function isSoftwareAdapter(adapter: AdapterLike): boolean {
  const info = adapter.info ?? {};
  return Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter) || /swiftshader/i.test(info.architecture ?? '') || /swiftshader/i.test(info.description ?? '');
}

export interface ChooseBackendOptions {
  ort: Ort;
  requested?: BackendRequest;
  /** `navigator.gpu` by default. */
  gpu?: GpuLike | null;
  /** Whether the page is cross-origin isolated; `isCrossOriginIsolated()` by default. */
  isolated?: boolean;
}

/**
 * False only in a browser page or worker served without COOP/COEP: there is no SharedArrayBuffer,
 * so onnxruntime-web's WASM cannot use threads. (Node has no such flag and no such limit.)
 */
export function isCrossOriginIsolated(): boolean {
  return (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== false;
}

/** Said in the backend's reason when WASM runs on one thread for want of COOP/COEP. */
export const ONE_THREAD_NOTE = 'One thread only: the page is served without the COOP/COEP headers that WASM threads need.';

/**
 * Asks onnxruntime-web for one WASM thread where threads cannot work (no cross-origin
 * isolation), instead of leaving it to try more and warn. Returns true when it did.
 */
export function limitWasmThreads(ort: Ort, isolated = isCrossOriginIsolated()): boolean {
  if (isolated || isNodeRuntime(ort)) return false;
  ort.env.wasm.numThreads = 1;
  return true;
}

/** chooseBackend's answer, with the one-thread note where WASM runs without isolation. */
export async function chooseBackend(options: ChooseBackendOptions): Promise<BackendInfo> {
  const info = await chooseBackendOnly(options);
  const isolated = options.isolated ?? isCrossOriginIsolated();
  if (info.backend !== 'wasm' || isolated) return info;
  return { ...info, reason: `${info.reason} ${ONE_THREAD_NOTE}` };
}

/** Decides the backend and says why, in words for people. Throws NoBackendError when impossible. */
async function chooseBackendOnly({ ort, requested = 'auto', gpu = defaultGpu() }: ChooseBackendOptions): Promise<BackendInfo> {
  if (isNodeRuntime(ort)) {
    if (requested !== 'auto' && requested !== 'cpu') {
      throw new NoBackendError(`The ${requested} backend needs onnxruntime-web; onnxruntime-node runs on the CPU only.`);
    }
    return { backend: 'cpu', fp16: false, reason: 'onnxruntime-node runs the graphs natively on the CPU.' };
  }
  if (requested === 'cpu') {
    throw new NoBackendError('The cpu backend needs onnxruntime-node; onnxruntime-web offers webgpu or wasm.');
  }
  if (requested === 'wasm') return { backend: 'wasm', fp16: false, reason: 'WASM was requested.' };

  let adapter: AdapterLike | null = null;
  let problem = '';
  if (!gpu) {
    problem = 'this browser has no WebGPU';
  } else {
    try {
      adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) problem = 'no WebGPU adapter is available';
    } catch (error) {
      problem = `the WebGPU adapter request failed (${(error as Error).message})`;
    }
  }
  if (!adapter) {
    if (requested === 'webgpu') throw new NoBackendError(`WebGPU was requested but ${problem}.`);
    return { backend: 'wasm', fp16: false, reason: `WASM, because ${problem}.` };
  }

  const fp16 = adapter.features.has('shader-f16');
  const f16Note = fp16 ? 'with shader-f16 (fp16 graphs)' : 'without shader-f16 (fp32 graphs)';
  if (isSoftwareAdapter(adapter)) {
    if (requested === 'webgpu') {
      return { backend: 'webgpu', fp16, reason: `WebGPU was requested; the adapter (${adapterName(adapter)}) is a software fallback, ${f16Note}.` };
    }
    return {
      backend: 'wasm',
      fp16: false,
      reason: `WASM, because the only WebGPU adapter (${adapterName(adapter)}) is a software fallback, which is far slower than WASM.`,
    };
  }
  const how = requested === 'webgpu' ? 'WebGPU was requested' : 'WebGPU';
  return { backend: 'webgpu', fp16, reason: `${how} on ${adapterName(adapter)}, ${f16Note}.` };
}

/**
 * Calls `onLost` when ORT's WebGPU device is lost (driver reset, out of memory). ORT creates the
 * device with the first WebGPU session and exposes it as `env.webgpu.device`.
 */
export function watchDeviceLoss(ort: Ort, onLost: (message: string) => void): void {
  const device = (ort.env as { webgpu?: { device?: { lost?: Promise<{ message?: string; reason?: string }> } } }).webgpu?.device;
  void device?.lost?.then((info) => onLost(info.message || info.reason || 'unknown reason'));
}
