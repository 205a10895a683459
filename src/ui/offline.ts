// Registers the service worker that keeps the app shell (HTML, scripts, the ORT wasm) so a second
// visit works without a network; model files are cached by the engine itself (Cache Storage).
import wasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url';

/**
 * The first visit loads scripts before the service worker exists, so they never pass through it;
 * tell it which build files this page uses so it can keep them.
 */
function shellFiles(): string[] {
  const assets = new URL(`${import.meta.env.BASE_URL}assets/`, location.href).href;
  const loaded = performance
    .getEntriesByType('resource')
    .map((entry) => entry.name)
    .filter((url) => url.startsWith(assets));
  return [...new Set([...loaded, new URL(wasmUrl, location.href).href])];
}

/**
 * `appLoaded` resolves once the worker script and the wasm have been fetched (the first model is
 * ready): only then are all build files in the page's resource timing.
 */
export function registerOfflineCache(appLoaded: Promise<void>): void {
  // The dev server rebuilds modules on the fly: caching them there would serve stale code.
  if (!import.meta.env.PROD || !('serviceWorker' in navigator)) return;
  navigator.serviceWorker
    .register(`${import.meta.env.BASE_URL}sw.js`)
    .then(() => Promise.all([navigator.serviceWorker.ready, appLoaded]))
    .then(([registration]) => registration.active?.postMessage({ type: 'keep', urls: shellFiles() }))
    .catch(() => {
      // Without it the app still works online; offline use is a bonus, not a requirement to start.
    });
}
