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

/** A model URL as people see it: relative to the page's origin when it is on the same site. */
export function shownModelUrl(url: string, href: string): string {
  const origin = new URL(href).origin;
  return url.startsWith(`${origin}/`) ? url.slice(origin.length) : url;
}

/**
 * Resolves a model address typed by a person or given as `?model=`: absolute or relative to the
 * page, the folder or its manifest.json. Throws a sentence when it is no URL or not http(s)
 * (`javascript:`, `data:`, `file:` … are refused).
 */
export function resolveModelUrl(input: string, href: string): string {
  const asked = input.trim();
  let url: string;
  try {
    url = normalizeModelUrl(asked, href);
  } catch {
    throw new Error(`"${asked}" is not a URL.`);
  }
  const scheme = new URL(url).protocol;
  if (scheme !== 'http:' && scheme !== 'https:') {
    throw new Error(`"${asked}" is not an http(s) address (${scheme} is not allowed); give a model folder's URL or a path like /models/<name>/.`);
  }
  return url;
}

/** The model a page opens: its URL and how it is shown, or why the address's `?model=` cannot be used. */
export interface PageModel {
  url: string;
  label: string;
  /** Set when `?model=` was not a URL: the page opens `fallback` instead and says why. */
  error?: string;
}

/** Reads `?model=` without throwing: a value that is no http(s) URL falls back to `fallback`, with a message. */
export function pageModelFromLocation(search: string, href: string, fallback: string): PageModel {
  const asked = modelUrlFromSearch(search, fallback);
  try {
    const url = resolveModelUrl(asked, href);
    return { url, label: shownModelUrl(url, href) };
  } catch (error) {
    const url = normalizeModelUrl(fallback, href);
    return { url, label: shownModelUrl(url, href), error: `The address's model: ${(error as Error).message} The default model is open instead.` };
  }
}
