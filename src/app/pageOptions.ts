// Options a page URL may carry: `?backend=webgpu|wasm|auto` and `?model=<package URL>`.
import type { BackendChoice } from '../../workers/protocol';

const BACKENDS: readonly BackendChoice[] = ['auto', 'webgpu', 'wasm'];

export function backendFromSearch(search: string): BackendChoice {
  const value = new URLSearchParams(search).get('backend')?.toLowerCase();
  return BACKENDS.find((b) => b === value) ?? 'auto';
}

export function modelUrlFromSearch(search: string, fallback: string): string {
  return new URLSearchParams(search).get('model')?.trim() || fallback;
}

/**
 * A model URL relative to the page becomes absolute and names the package folder, also when a
 * person pastes the address of its manifest.json.
 */
export function normalizeModelUrl(url: string, base: string): string {
  const absolute = new URL(url.trim(), base);
  absolute.pathname = absolute.pathname.replace(/manifest\.json$/, '');
  if (!absolute.pathname.endsWith('/')) absolute.pathname += '/';
  return absolute.href;
}
