// HART Web's service worker: the app shell for offline use.
// Hashed build assets (scripts, styles, the ORT wasm) never change under a name, so they are
// served from the cache first; the page itself is fetched from the network first and falls back
// to the cached copy when offline. Model files are left alone: the engine caches those.
// Lookups ignore `Vary`: servers such as `vite preview` answer with `Vary: Origin`, and a reload
// sends other request headers than the first visit did, so a strict match would miss offline.
const SHELL = 'hart-web-shell-v1';
const MATCH = { ignoreVary: true };
const scope = new URL(self.registration.scope);

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.add(scope.href)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

function isAsset(url) {
  return url.origin === scope.origin && url.pathname.startsWith(`${scope.pathname}assets/`);
}

async function cacheFirst(request) {
  const cache = await caches.open(SHELL);
  const hit = await cache.match(request, MATCH);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone()).catch(() => undefined);
  return response;
}

async function networkFirst(request) {
  const cache = await caches.open(SHELL);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(scope.href, response.clone()).catch(() => undefined);
    return response;
  } catch (error) {
    const hit = await cache.match(scope.href, MATCH);
    if (hit) return hit;
    throw error;
  }
}

// The page lists the build files it loaded before this worker was in control.
self.addEventListener('message', (event) => {
  const { type, urls } = event.data ?? {};
  if (type !== 'keep' || !Array.isArray(urls)) return;
  const wanted = urls.map((u) => new URL(u, scope)).filter(isAsset);
  event.waitUntil(
    caches.open(SHELL).then((cache) =>
      Promise.all(wanted.map(async (url) => (await cache.match(url.href, MATCH)) ?? cache.add(url.href).catch(() => undefined))),
    ),
  );
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (request.mode === 'navigate' && url.origin === scope.origin) event.respondWith(networkFirst(request));
  else if (isAsset(url)) event.respondWith(cacheFirst(request));
});
