// A local stand-in for the Hugging Face Hub, for the import's tests (vitest and e2e): folders
// served as repositories the way the Hub serves them, and faults on demand.
//   GET /{owner}/{repo}/resolve/main/{path}   302 to /cdn/{owner}/{repo}/{path} (the Hub sends its CDN)
//   GET /cdn/{owner}/{repo}/{path}            the file: Range (206 + Content-Range), ETag, Accept-Ranges
//   GET /api/models/{owner}/{repo}/tree/main[/{folder}]   [{ type, path, size }] as the Hub's tree API
//   GET {prefix}{path} for each `static` mount  a plain folder (a skeleton), Range too
// Every answer allows any origin (CORS, CORP), so a page of another port can read it.
// Faults, per served path (`owner/repo/path`, or a static mount's `prefix + path`):
//   missing: 404 · error: 500 for the next `times` requests (transient) · cut: the connection is
//   dropped after `after` bytes of the body, `times` times · truncate: the file is `bytes` long ·
//   config: a JSON file with `values` merged into it.
import { createServer } from 'node:http';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Headers': 'Range, If-Range',
  'Access-Control-Expose-Headers': 'Content-Range, Content-Length, ETag, Accept-Ranges',
  'Cross-Origin-Resource-Policy': 'cross-origin',
};

/**
 * @param {{ repos: Record<string, string>, static?: Record<string, string>, port?: number }} options
 *   repos: 'owner/repo' → folder; static: '/prefix/' → folder.
 */
export async function startHub({ repos, static: mounts = {}, port = 0 }) {
  /** @type {Map<string, any>} */
  const faults = new Map();
  /** Bytes of file bodies sent, per served path. */
  const served = new Map();
  /** Every request: { path, range }. */
  const requests = [];

  const body = (file, key) => {
    let bytes = readFileSync(file);
    const fault = faults.get(key);
    if (fault?.kind === 'config') bytes = Buffer.from(JSON.stringify({ ...JSON.parse(bytes.toString('utf8')), ...fault.values }));
    if (fault?.kind === 'truncate') bytes = bytes.subarray(0, fault.bytes);
    return bytes;
  };

  const sendFile = (req, res, file, key) => {
    let info;
    try {
      info = statSync(file);
    } catch {
      info = undefined;
    }
    const fault = faults.get(key);
    if (!info?.isFile() || fault?.kind === 'missing') {
      res.writeHead(404, { ...CORS, 'Content-Type': 'text/plain' }).end('Entry not found');
      return;
    }
    if (fault?.kind === 'error' && fault.times > 0) {
      fault.times--;
      res.writeHead(500, { ...CORS, 'Content-Type': 'text/plain' }).end('Internal Error');
      return;
    }
    const bytes = body(file, key);
    const etag = `"${createHash('sha256').update(bytes).digest('hex').slice(0, 32)}"`;
    const headers = { ...CORS, 'Accept-Ranges': 'bytes', ETag: etag, 'Content-Type': 'application/octet-stream' };
    const match = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let start = 0;
    let end = bytes.length - 1;
    let status = 200;
    if (match) {
      start = Number(match[1]);
      end = match[2] ? Math.min(Number(match[2]), bytes.length - 1) : bytes.length - 1;
      if (start >= bytes.length) {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${bytes.length}` }).end();
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${bytes.length}`;
    }
    const part = bytes.subarray(start, end + 1);
    headers['Content-Length'] = String(part.length);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return res.end();
    if (fault?.kind === 'cut' && fault.times > 0 && part.length > fault.after) {
      fault.times--;
      const sent = part.subarray(0, fault.after);
      served.set(key, (served.get(key) ?? 0) + sent.length);
      // The bytes go out (and have time to be read), then the connection is dropped mid-body.
      res.write(sent, () => setTimeout(() => res.socket?.destroy(), 150));
      return;
    }
    served.set(key, (served.get(key) ?? 0) + part.length);
    res.end(part);
  };

  const server = createServer((req, res) => {
    const { pathname } = new URL(req.url ?? '/', 'http://hub');
    const decoded = decodeURIComponent(pathname);
    requests.push({ path: decoded, range: req.headers.range ?? '' });
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...CORS, 'Access-Control-Allow-Methods': 'GET, HEAD' }).end();
      return;
    }
    const mount = Object.keys(mounts).find((prefix) => decoded.startsWith(prefix));
    if (mount) {
      const rest = decoded.slice(mount.length);
      const file = path.resolve(mounts[mount], rest);
      if (!file.startsWith(path.resolve(mounts[mount]))) return res.writeHead(403, CORS).end();
      return sendFile(req, res, file, mount + rest);
    }
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/main(?:\/(.*))?$/.exec(decoded);
    if (tree) {
      const folder = repos[tree[1]];
      const sub = tree[2] ?? '';
      let names;
      try {
        names = readdirSync(path.join(folder ?? '/nonexistent', sub));
      } catch {
        res.writeHead(404, { ...CORS, 'Content-Type': 'application/json' }).end('{"error":"Entry not found"}');
        return;
      }
      const entries = names.sort().map((name) => {
        const rel = sub ? `${sub}/${name}` : name;
        const info = statSync(path.join(folder, rel));
        return info.isDirectory() ? { type: 'directory', path: rel } : { type: 'file', path: rel, size: info.size };
      });
      res.writeHead(200, { ...CORS, 'Content-Type': 'application/json' }).end(JSON.stringify(entries));
      return;
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(decoded);
    if (resolve && repos[resolve[1]]) {
      res.writeHead(302, { ...CORS, Location: `/cdn/${resolve[1]}/${resolve[2].split('/').map(encodeURIComponent).join('/')}` }).end();
      return;
    }
    const cdn = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(decoded);
    if (cdn && repos[cdn[1]]) {
      const root = path.resolve(repos[cdn[1]]);
      const file = path.resolve(root, cdn[2]);
      if (!file.startsWith(root)) return res.writeHead(403, CORS).end();
      return sendFile(req, res, file, `${cdn[1]}/${cdn[2]}`);
    }
    res.writeHead(404, { ...CORS, 'Content-Type': 'text/plain' }).end('Repository not found');
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    served,
    /** Sets (or with `undefined`, clears) the fault of a served path. */
    fault(key, fault) {
      if (fault) faults.set(key, { times: 1, ...fault });
      else faults.delete(key);
    },
    clearFaults() {
      faults.clear();
    },
    /** Bytes served in all, or of one path. */
    bytesServed(key) {
      if (key) return served.get(key) ?? 0;
      return [...served.values()].reduce((a, b) => a + b, 0);
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
