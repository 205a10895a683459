// Registers the service worker that keeps the app shell (HTML, scripts, the ORT wasm) so a second
// visit works without a network; model files are cached by the engine itself (Cache Storage).
export function registerOfflineCache(): void {
  // The dev server rebuilds modules on the fly: caching them there would serve stale code.
  if (!import.meta.env.PROD || !('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register(`${import.meta.env.BASE_URL}sw.js`).catch(() => {
    // Without it the app still works online; offline use is a bonus, not a requirement to start.
  });
}
