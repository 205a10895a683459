// Engine parity in headless Chromium: `node tests/engine/browser/run.mjs [page|worker|device-lost] [webgpu] [wasm]`.
// Two pages, each run on WebGPU (forced: here it is the SwiftShader software adapter) and WASM:
// - page: page.ts (bundled with esbuild) runs the engine in the page and checks tokens, logits
//   (1e-3 relative) and pixels (1/255) against the golden fixture;
// - worker: worker.html is built with Vite and the app's config, so the app's engine worker code
//   (workers/exposeEngine.ts, with the test hooks of hooked.worker.ts) runs the fixture through
//   comlink: tokens and pixels per golden case with the fixture's draws, cancel-then-run and
//   determinism;
// - device-lost (WebGPU only): worker.html again, the app's store over the test worker; the
//   device is destroyed mid-run, the run fails as device-lost, the store loads the model again in
//   a fresh worker and the next Generate finishes.
// Exits 1 unless every check passes. Slow on SwiftShader (shader compilation): a few minutes.
import { build as esbuild } from 'esbuild';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build as viteBuild } from 'vite';
import { WEBGPU_FLAGS, finishCheck, withChromium } from '../../chromium.mjs';
import { startServer } from '../../e2e/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const fixture = process.env.HART_FIXTURE ?? path.join(root, 'tests/fixtures/tiny');
const args = process.argv.slice(2);
const MODES = ['page', 'worker', 'device-lost'];
const modes = args.filter((a) => MODES.includes(a));
const backendArgs = args.filter((a) => a === 'webgpu' || a === 'wasm');
const unknown = args.filter((a) => !modes.includes(a) && !backendArgs.includes(a));
if (unknown.length) {
  console.error(`unknown argument(s): ${unknown.join(' ')} (expected page, worker, device-lost, webgpu, wasm)`);
  process.exit(2);
}
const runModes = modes.length ? modes : MODES;
const backends = backendArgs.length ? backendArgs : ['webgpu', 'wasm'];
const work = mkdtempSync(path.join(tmpdir(), 'hart-browser-'));
const viteOut = path.join(work, 'vite');

if (runModes.includes('worker') || runModes.includes('device-lost')) {
  // The app's vite.config.ts (plugins, worker format) with this folder as the root and
  // worker.html as the only entry: the worker is bundled exactly as `vite build` bundles it.
  await viteBuild({
    configFile: path.join(root, 'vite.config.ts'),
    root: here,
    publicDir: false,
    logLevel: 'warn',
    build: { outDir: viteOut, emptyOutDir: true, rollupOptions: { input: path.join(here, 'worker.html') } },
  });
}

if (runModes.includes('page')) {
  await esbuild({ entryPoints: [path.join(here, 'page.ts')], bundle: true, format: 'esm', outfile: path.join(viteOut, 'page.js'), logLevel: 'warning' });
  writeFileSync(path.join(viteOut, 'index.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="/page.js"></script>');
}

// Cross-origin isolated, as the app is served (vite.config.ts), so ORT sees the same page.
const server = await startServer(viteOut, {
  '/fixture/': fixture,
  '/ort/': path.join(root, 'node_modules/onnxruntime-web/dist'),
});
const origin = server.url;

/** The checks a report fails, in words (empty when it passes). */
function pageFailures(report, backend) {
  return [
    report.backend.backend !== backend && `ran on ${report.backend.backend}`,
    report.results.length !== 2 && `${report.results.length} golden cases instead of 2`,
    ...report.results.flatMap((r) => [
      !r.tokensSame && `${r.name}: tokens differ`,
      !(r.logitsError < 1e-3) && `${r.name}: logits off by ${r.logitsError}`,
      !(r.maxPixelDiff <= 1) && `${r.name}: pixels off by ${r.maxPixelDiff}`,
    ]),
    report.cancelled !== 'cancelled' && `cancel mid-run gave "${report.cancelled}"`,
    !report.deterministic && 'two runs with one seed differ',
    report.conditional.length !== 2 && `${report.conditional.length} conditional-rows checks instead of 2`,
    ...report.conditional.flatMap((r) => [
      !r.tokensSame && `conditional rows alone, ${r.settings}: tokens differ from both rows`,
      !(r.maxPixelDiff <= 1) && `conditional rows alone, ${r.settings}: pixels off by ${r.maxPixelDiff}`,
    ]),
  ].filter(Boolean);
}

function workerFailures(report, backend) {
  return [
    report.backend.backend !== backend && `ran on ${report.backend.backend}`,
    report.results.length !== 2 && `${report.results.length} golden cases instead of 2`,
    ...report.results.flatMap((r) => [
      r.tokenMismatches.length > 0 && `${r.name}: tokens differ at scales ${r.tokenMismatches.join(', ')}`,
      !(r.maxPixelDiff <= 1) && `${r.name}: pixels off by ${r.maxPixelDiff}`,
    ]),
    // The page cancels when scale 1 is reported; the worker only sees that message when the
    // engine yields to the worker's event loop.
    report.cancelled !== 'cancelled' && `cancel mid-run gave "${report.cancelled}" (events: ${report.cancelEvents.join(' ')})`,
    !(report.afterCancelPixelDiff <= 1) && `the golden run after the cancel is off by ${report.afterCancelPixelDiff}`,
    !report.deterministic && 'two runs with one seed differ',
    !report.plainResult && 'a request without test hooks came back with tokens',
    ...report.workerErrors.map((e) => `worker error: ${e}`),
  ].filter(Boolean);
}

function deviceLossFailures(report) {
  return [
    report.before !== 'webgpu' && `loaded on ${report.before}, not webgpu`,
    report.lost.phase !== 'error' && `the run with the lost device ended as "${report.lost.phase}"`,
    report.lost.error?.code !== 'device-lost' && `the run with the lost device failed as ${JSON.stringify(report.lost.error)}`,
    !/device was lost/.test(report.lost.error?.message ?? '') && 'the message does not say that the device was lost',
    report.reloaded.status !== 'ready' && `after the loss the model is "${report.reloaded.status}" (${JSON.stringify(report.reloaded.modelError)})`,
    report.next.phase !== 'done' && `the next Generate ended as "${report.next.phase}" (${JSON.stringify(report.next.error)})`,
    report.next.gallery !== 1 && `${report.next.gallery} images in the gallery instead of 1`,
  ].filter(Boolean);
}

const checks = {
  page: { url: '/', entry: 'runCheck', failures: pageFailures },
  worker: { url: '/worker.html', entry: 'runWorkerCheck', failures: workerFailures },
  'device-lost': { url: '/worker.html', entry: 'runDeviceLossCheck', failures: deviceLossFailures, only: ['webgpu'] },
};

let ok = true;
await finishCheck(async () => {
  await withChromium(WEBGPU_FLAGS, async (browser) => {
    for (const mode of runModes) {
      const { url, entry, failures, only } = checks[mode];
      const modeBackends = backends.filter((b) => !only || only.includes(b));
      if (!modeBackends.length) continue;
      // A fresh context per mode: the worker's package cache starts empty, as on a first visit.
      const context = await browser.newContext();
      const page = await context.newPage();
      page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
      await page.goto(origin + url);
      await page.waitForFunction((name) => name in window, entry);
      for (const backend of modeBackends) {
        const started = Date.now();
        const report = await page.evaluate(([name, b]) => window[name](b), [entry, backend]);
        console.log(JSON.stringify(report));
        const failed = failures(report, backend);
        console.log(`${failed.length ? '✗' : '✓'} ${mode} ${backend} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
        for (const f of failed) console.log(`    ${f}`);
        ok &&= failed.length === 0;
      }
      await context.close();
    }
  });
  return ok;
}, async () => {
  await server.close();
  rmSync(work, { recursive: true, force: true });
});
