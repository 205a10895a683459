// The HTTP headers the built app wants from its host, defined once: vite.config.ts (dev server,
// preview, the <meta> policy in dist/index.html and dist/_headers), the e2e server and the README
// all take them from here.

/**
 * COOP/COEP make the page cross-origin isolated: SharedArrayBuffer exists and onnxruntime-web may
 * run WASM on several threads. Without them the app still works, on one WASM thread.
 */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * What the app loads and from where. Scripts, styles, workers (the engine worker, the service
 * worker) come from the app's own origin and no inline script exists; 'wasm-unsafe-eval' lets
 * onnxruntime-web compile its WebAssembly and allows no JavaScript eval. Images are the app's own,
 * data: (the icon) and blob: (gallery PNGs). Model packages may live on other origins (a Model URL
 * a person types, `?model=`), so fetches go to the app's origin and to any https: origin; a
 * plain-http model server elsewhere is refused, as an https page's mixed content would be anyway.
 */
const DIRECTIVES = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "connect-src 'self' https:",
  "img-src 'self' data: blob:",
  "style-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'none'",
];

/** The policy as a <meta http-equiv> carries it (any static host, no configuration). */
export const CONTENT_SECURITY_POLICY = DIRECTIVES.join('; ');

/**
 * The policy as a response header. Only a header reaches what a <meta> cannot: the engine worker
 * (a worker's policy comes from its own response) and framing (frame-ancestors).
 */
export const CONTENT_SECURITY_POLICY_HEADER = [...DIRECTIVES, "frame-ancestors 'none'"].join('; ');

/** dist/_headers, the file Netlify and Cloudflare Pages read: every header for every path. */
export function headersFile() {
  const lines = Object.entries({ ...ISOLATION_HEADERS, 'Content-Security-Policy': CONTENT_SECURITY_POLICY_HEADER }).map(([name, value]) => `  ${name}: ${value}`);
  return ['/*', ...lines, ''].join('\n');
}
