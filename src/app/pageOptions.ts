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

/** The model a page opens: its URL and how it is shown, or why the address's `?model=` cannot be used. */
export interface PageModel {
  url: string;
  label: string;
  /** Set when `?model=` was not a URL: the page opens `fallback` instead and says why. */
  error?: string;
}

/** Reads `?model=` without throwing: a value that is no URL falls back to `fallback`, with a message. */
export function pageModelFromLocation(search: string, href: string, fallback: string): PageModel {
  const origin = new URL(href).origin;
  const shown = (url: string) => (url.startsWith(`${origin}/`) ? url.slice(origin.length) : url);
  const asked = modelUrlFromSearch(search, fallback);
  try {
    const url = normalizeModelUrl(asked, href);
    return { url, label: shown(url) };
  } catch {
    const url = normalizeModelUrl(fallback, href);
    return { url, label: shown(url), error: `The address's model "${asked}" is not a URL; the default model is open instead.` };
  }
}
