// Engine parity in headless Chromium: `node tests/engine/browser/run.mjs [webgpu] [wasm]`.
// Bundles page.ts with esbuild, serves it with the golden fixture and onnxruntime-web's files,
// runs the engine on WebGPU (forced: here it is the SwiftShader software adapter) and on WASM,
// and exits 1 unless tokens match, logits are within 1e-3 and pixels within 1/255 everywhere.
// Slow on SwiftShader (shader compilation): about a minute.
import { build } from 'esbuild';
import { createReadStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const fixture = process.env.HART_FIXTURE ?? path.join(root, 'tests/fixtures/tiny');
const backends = process.argv.slice(2).length ? process.argv.slice(2) : ['webgpu', 'wasm'];
const work = mkdtempSync(path.join(tmpdir(), 'hart-browser-'));

await build({ entryPoints: [path.join(here, 'page.ts')], bundle: true, format: 'esm', outfile: path.join(work, 'page.js'), logLevel: 'warning' });

const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, 'http://localhost');
  let file = path.join(work, 'page.js');
  if (pathname === '/') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><meta charset="utf-8"><script type="module" src="/page.js"></script>');
    return;
  }
  if (pathname.startsWith('/ort/')) file = path.join(root, 'node_modules/onnxruntime-web/dist', path.basename(pathname));
  else if (pathname.startsWith('/fixture/')) file = path.join(fixture, path.basename(pathname));
  if (!existsSync(file)) {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless=new', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--enable-unsafe-webgpu'],
});
let ok = true;
try {
  const page = await browser.newPage();
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => 'runCheck' in window);
  for (const backend of backends) {
    const report = await page.evaluate((b) => window.runCheck(b), backend);
    console.log(JSON.stringify(report));
    const pass =
      report.backend.backend === backend &&
      report.cancelled === 'cancelled' &&
      report.deterministic &&
      report.results.every((r) => r.tokensSame && r.logitsError < 1e-3 && r.maxPixelDiff <= 1);
    console.log(`${pass ? '✓' : '✗'} ${backend}`);
    ok &&= pass;
  }
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  ok = false;
} finally {
  await browser.close();
  server.close();
  rmSync(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
