// `npm run test:e2e`: builds the app, serves dist/ on a free port, drives Debian's Chromium
// through the user journeys on WASM and on WebGPU (SwiftShader), and stops the server.
// Exit code 0 only when every check passed. Screenshots are checked in test-results/screenshots/;
// E2E_UPDATE_SCREENSHOTS=1 writes them to docs/screenshots/ (the ones the docs show) instead.
//
// Models: the WASM journeys use the app's default package (public/models/hart-shapes). WebGPU on
// SwiftShader is a software rasteriser, far too slow for that package on 2 cores (its warm-up
// alone ran past 6 minutes), so the WebGPU journey loads the tiny golden-fixture package
// (tests/fixtures/tiny, 4 scales at 32 px) through the same "?model=" URL a person can use.
//
// Environment:
//   E2E_MODEL_DIR         serve this package at /e2e-model/ and use it instead of the default
//   E2E_WEBGPU_MODEL_DIR  package for the WebGPU journey (default tests/fixtures/tiny)
//   E2E_BACKENDS          comma list of journeys: wasm,webgpu,preview,tabs,static,import (default all six;
//                         preview: the built app served by `npm run preview`, offline reload
//                         included; tabs: two tabs opening the same model at once share one
//                         download; static: dist/ on a host without COOP/COEP, and on one that
//                         sends the Content-Security-Policy header, each generating once;
//                         import: a model of a test catalog imported in the page from a local
//                         hub serving the stand-in published files, built with Python as the
//                         import's vitest suites build them)
//   E2E_NO_BUILD=1        reuse the existing dist/
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WEBGPU_FLAGS, withChromium } from '../chromium.mjs';
import { startServer } from './server.mjs';
import { startDevServer, startPreviewServer } from './devServer.mjs';
import { tmpdir } from 'node:os';
import { startHub } from '../engine/import/hubServer.mjs';
import { autoPicksWasmJourney, devServerJourney, errorJourney, importJourney, journey, localFolderJourney, offlineJourney, staticHostJourney, twoTabsJourney } from './scenarios.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dist = path.join(root, 'dist');
const shots = path.join(root, process.env.E2E_UPDATE_SCREENSHOTS === '1' ? 'docs/screenshots' : 'test-results/screenshots');
const backends = (process.env.E2E_BACKENDS ?? 'wasm,webgpu,preview,tabs,static,import').split(',').map((b) => b.trim());
const PROMPTS = ['a red circle on a blue background', 'a small yellow square on a black background'];

function build() {
  if (process.env.E2E_NO_BUILD === '1' && existsSync(dist)) return;
  console.log('▶ vite build');
  const run = spawnSync('npx', ['vite', 'build', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  if (run.status !== 0) throw new Error('vite build failed');
}

function requirePackage(dir, hint) {
  if (!existsSync(path.join(dir, 'manifest.json'))) throw new Error(`no model package at ${dir} (${hint})`);
  return dir;
}

/** Folders to serve besides dist/, and the `?model=` value of each journey (undefined: the app's default). */
function models() {
  const mounts = {};
  let model;
  if (process.env.E2E_MODEL_DIR) {
    mounts['/e2e-model/'] = requirePackage(path.resolve(process.env.E2E_MODEL_DIR), 'E2E_MODEL_DIR');
    model = '/e2e-model/';
  } else {
    requirePackage(path.join(dist, 'models/hart-shapes'), 'the default package, copied from public/models by vite build');
  }
  const tiny = path.resolve(process.env.E2E_WEBGPU_MODEL_DIR ?? path.join(root, 'tests/fixtures/tiny'));
  mounts['/e2e-tiny/'] = requirePackage(tiny, 'E2E_WEBGPU_MODEL_DIR or tests/fixtures/tiny');
  // The same package answered slowly (server.mjs), for two tabs whose downloads overlap.
  mounts['/e2e-slow-tiny/'] = tiny;
  return { mounts, model, webgpuModel: '/e2e-tiny/' };
}

function query(backend, model) {
  const params = new URLSearchParams();
  if (backend) params.set('backend', backend);
  if (model) params.set('model', model);
  const text = params.toString();
  return text ? `?${text}` : '';
}

const results = [];
async function step(name, fn) {
  const started = Date.now();
  process.stdout.write(`  … ${name}\n`);
  try {
    const value = await fn();
    results.push({ name, ok: true, seconds: (Date.now() - started) / 1000 });
    console.log(`  ✓ ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return value;
  } catch (error) {
    results.push({ name, ok: false, seconds: (Date.now() - started) / 1000, error: error.message });
    console.log(`  ✗ ${name}: ${error.message}`);
    throw error;
  }
}

/** Runs one journey; a failed check ends that journey but not the others. */
async function attempt(fn) {
  try {
    return await fn();
  } catch {
    return undefined;
  }
}

async function main() {
  const started = Date.now();
  build();
  const { mounts, model, webgpuModel } = models();
  const server = await startServer(dist, mounts);
  console.log(`▶ serving ${dist} at ${server.url}`);
  const timeouts = { load: 240_000, run: 240_000 };
  const webgpuTimeouts = { load: 400_000, run: 400_000 };
  const measured = [];
  try {
    if (backends.includes('wasm')) {
      // WebGPU switched off (no --enable-unsafe-webgpu): no adapter, so 'auto' must fall back to WASM and say why.
      await withChromium([], async (browser) => {
        console.log('▶ WASM (WebGPU unavailable, backend=auto)');
        const common = { browser, baseUrl: server.url, shots, timeouts, prompts: PROMPTS, step };
        const result = {};
        measured.push(result);
        // The warm-up compiles WebGPU shaders only: on WASM (forced, or the fallback of 'auto') it is skipped.
        const expectBadge = { name: 'WASM', reason: /adapter|WebGPU/i, phases: ['download', 'upload to gpu'], absentPhases: ['warm-up'] };
        await attempt(() => journey({ ...common, result, query: query('auto', model), label: 'wasm', expectBadge }));
        await attempt(() => errorJourney({ ...common, query: query('wasm', model) }));
        await attempt(() => offlineJourney({ ...common, query: query('wasm', model) }));
        await attempt(() =>
          localFolderJourney({ ...common, query: query('wasm', model), folder: mounts['/e2e-tiny/'], modelName: 'hart-tiny' }),
        );
        // The dev server serves the repository, so the fixture package is reachable by its path.
        const dev = await startDevServer(root);
        try {
          const devTimeouts = { load: 120_000, run: 60_000 };
          const ok = await attempt(() =>
            devServerJourney({ ...common, timeouts: devTimeouts, baseUrl: dev.url, query: query('wasm', '/tests/fixtures/tiny/') }).then(() => true),
          );
          if (!ok) console.log(`  vite dev server output:\n${dev.output().trim().slice(-2000)}`);
        } finally {
          await dev.close();
        }
      });
    }
    if (backends.includes('preview')) {
      // `npm run preview` serves the same dist/ with its own headers (`Vary: Origin` among them).
      await withChromium([], async (browser) => {
        console.log('▶ vite preview (the production build as `npm run preview` serves it)');
        const preview = await startPreviewServer(root);
        try {
          const common = { browser, baseUrl: preview.url, timeouts, prompts: PROMPTS, step };
          const ok = await attempt(() => offlineJourney({ ...common, query: query('wasm'), server: 'vite preview' }).then(() => true));
          if (!ok) console.log(`  vite preview output:\n${preview.output().trim().slice(-2000)}`);
        } finally {
          await preview.close();
        }
      });
    }
    if (backends.includes('tabs')) {
      await withChromium([], async (browser) => {
        console.log('▶ two tabs (WASM, one browser profile)');
        const common = { browser, baseUrl: server.url, timeouts, step };
        await attempt(() => twoTabsJourney({ ...common, query: query('wasm', '/e2e-slow-tiny/'), packagePath: '/e2e-slow-tiny/', requests: server.requests }));
      });
    }
    if (backends.includes('static')) {
      await withChromium([], async (browser) => {
        console.log('▶ static hosting (WASM): without COOP/COEP, and with the Content-Security-Policy header');
        const plain = await startServer(dist, mounts, { isolation: false });
        const strict = await startServer(dist, mounts, { csp: true });
        try {
          const common = { browser, timeouts, prompts: PROMPTS, step };
          await attempt(() =>
            staticHostJourney({
              ...common,
              baseUrl: plain.url,
              query: query('auto', '/e2e-tiny/'),
              label: 'static host without COOP/COEP: one WASM thread, said in the badge; generates once',
              isolated: false,
              expectReason: /One thread only: the page is served without the COOP\/COEP headers/,
            }),
          );
          await attempt(() =>
            staticHostJourney({
              ...common,
              baseUrl: strict.url,
              query: query('auto', '/e2e-tiny/'),
              label: 'Content-Security-Policy header and <meta>: generates once with no violation',
              isolated: true,
              expectReason: /^WASM(?!.*One thread)/,
            }),
          );
        } finally {
          await plain.close();
          await strict.close();
        }
      });
    }
    if (backends.includes('import')) {
      await withChromium([], async (browser) => {
        console.log('▶ import (WASM): the stand-in published checkpoint from a local hub');
        // The stand-in and its skeleton, built (or found) as the import's vitest suites do.
        const found = spawnSync(process.execPath, ['--import', 'tsx', '-e', "import { publishedFixture } from './tests/engine/import/published.ts'; console.log(publishedFixture().root)"], { cwd: root, encoding: 'utf8', timeout: 1_800_000 });
        if (found.status !== 0) throw new Error(`the stand-in published files could not be built: ${found.stderr.trim().split('\n').pop()}`);
        const fixture = found.stdout.trim().split('\n').pop();
        const hub = await startHub({
          repos: { 'mit-han-lab/hart-0.7b-1024px': path.join(fixture, 'fake/hart'), 'mit-han-lab/Qwen2-VL-1.5B-Instruct': path.join(fixture, 'fake/qwen') },
          static: { '/skeleton/': path.join(fixture, 'skeleton-plain') },
        });
        const entry = (id, name, skeleton) => ({
          id, name, description: 'The stand-in published HART, served by a local hub.', imageSize: 64,
          source: { kind: 'import', hart: `${hub.url}/mit-han-lab/hart-0.7b-1024px`, qwen: `${hub.url}/mit-han-lab/Qwen2-VL-1.5B-Instruct`, skeleton },
          downloadBytes: 12_000_000, diskBytes: 9_000_000, needs: { webgpu: false, shaderF16: false, gpuBufferBytes: 0 },
        });
        const catalog = path.join(mkdtempSync(path.join(tmpdir(), 'hart-e2e-catalog-')), 'catalog.json');
        writeFileSync(catalog, JSON.stringify({ format: 'hart-web-catalog', version: 1, models: [
          entry('stand-in', 'Stand-in HART', `${hub.url}/skeleton/`),
          entry('no-skeleton', 'Stand-in without skeleton', `${hub.url}/no-skeleton/`),
        ] }));
        const withCatalog = await startServer(dist, mounts, { files: { '/models/catalog.json': catalog } });
        try {
          const result = { label: 'import' };
          await attempt(() => importJourney({ browser, baseUrl: withCatalog.url, query: query('wasm', '/e2e-tiny/'), entryName: 'Stand-in HART', missingSkeletonName: 'Stand-in without skeleton', timeouts, prompts: PROMPTS, step, result }));
          const memory = result.memory ? `, page memory ${(result.memory / 2 ** 20).toFixed(0)} MiB after it` : '';
          if (result.importSeconds) console.log(`  import: ${result.importSeconds.toFixed(1)} s from the click to "Imported" (${result.importLine})${memory}; hub served ${hub.bytesServed().toLocaleString('en-US')} bytes`);
        } finally {
          await withCatalog.close();
          await hub.close();
        }
      });
    }
    if (backends.includes('webgpu')) {
      // SwiftShader is a software adapter: 'auto' would pick WASM, so the test forces WebGPU.
      await withChromium(WEBGPU_FLAGS, async (browser) => {
        console.log('▶ WebGPU (SwiftShader, backend=webgpu forced)');
        const result = {};
        measured.push(result);
        const common = { browser, baseUrl: server.url, shots, timeouts: webgpuTimeouts, prompts: PROMPTS, step };
        await attempt(() => journey({ ...common, result, query: query('webgpu', webgpuModel), label: 'webgpu', expectBadge: { name: 'WebGPU', phases: ['download', 'upload to gpu', 'warm-up'] } }));
        await attempt(() => autoPicksWasmJourney({ ...common, query: query('auto', webgpuModel) }));
      });
    }
  } finally {
    await server.close();
  }

  console.log('\nMeasurements (from the key press, in the page)');
  for (const m of measured.filter((m) => m.label)) {
    const first = m.firstPreviewMs !== undefined ? `${(m.firstPreviewMs / 1000).toFixed(2)} s` : 'n/a';
    const final = m.finalMs !== undefined ? `${(m.finalMs / 1000).toFixed(2)} s` : 'n/a';
    console.log(`  ${m.label.padEnd(7)} first preview ${first}, final image ${final} | badge: ${m.badge}`);
  }
  const failed = results.filter((r) => !r.ok);
  console.log(`\n${results.length - failed.length}/${results.length} e2e checks passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  for (const f of failed) console.log(`  ✗ ${f.name}: ${f.error}`);
  return failed.length === 0 && results.length > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`e2e runner failed: ${error.message}`);
    process.exit(1);
  },
);
