// A tiny static server for the built app, with the headers the app needs (COOP/COEP make the page
// cross-origin isolated, as `vite preview` does), or without them, or with the app's
// Content-Security-Policy header too. Extra folders can be mounted under a prefix.
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { CONTENT_SECURITY_POLICY_HEADER, ISOLATION_HEADERS } from '../../deploy/headers.mjs';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

async function resolveFile(root, urlPath) {
  const decoded = decodeURIComponent(urlPath);
  const file = path.resolve(root, `.${decoded}`);
  if (!file.startsWith(path.resolve(root))) return undefined;
  try {
    const info = await stat(file);
    if (info.isDirectory()) return resolveFile(root, path.posix.join(decoded, 'index.html'));
    return { file, size: info.size };
  } catch {
    return undefined;
  }
}

/** How long each file under a mount named `/e2e-slow…/` waits before its answer. */
const SLOW_MS = 300;

/**
 * mounts: { '/prefix/': '/abs/folder' }; everything else comes from root. Requests under
 * /e2e-hang/ are never answered (a server that stalls, to cancel a load); files under a mount
 * whose prefix starts with /e2e-slow are answered after SLOW_MS (a download two tabs overlap in).
 * `requests` lists every path asked for.
 * options.isolation (default true): send COOP/COEP; false is a plain static host that cannot set
 * them. options.files: { '/path': '/abs/file' } answers those paths with those files (a test's
 * own model list at /models/catalog.json). options.csp: also send the app's Content-Security-Policy header (deploy/headers.mjs).
 */
export async function startServer(root, mounts = {}, { isolation = true, csp = false, files = {} } = {}) {
  const requests = [];
  const server = createServer(async (req, res) => {
    const { pathname } = new URL(req.url, 'http://localhost');
    requests.push(pathname);
    if (pathname.startsWith('/e2e-hang/')) return;
    if (pathname.startsWith('/e2e-slow')) await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
    const mount = Object.keys(mounts).find((prefix) => pathname.startsWith(prefix));
    const found = files[pathname]
      ? { file: files[pathname], size: (await stat(files[pathname])).size }
      : mount
        ? await resolveFile(mounts[mount], `/${pathname.slice(mount.length)}`)
        : await resolveFile(root, pathname);
    const headers = {
      ...(isolation ? ISOLATION_HEADERS : {}),
      ...(csp ? { 'Content-Security-Policy': CONTENT_SECURITY_POLICY_HEADER } : {}),
      'Cache-Control': 'no-cache',
    };
    if (!found) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    const type = TYPES[path.extname(found.file)] ?? 'application/octet-stream';
    res.writeHead(200, { ...headers, 'Content-Type': type, 'Content-Length': String(found.size) });
    if (req.method === 'HEAD') res.end();
    else createReadStream(found.file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
