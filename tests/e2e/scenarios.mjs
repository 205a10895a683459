// What a person does with the app, checked in a real Chromium: load, generate, watch every scale,
// keep, reload, download, cancel, and the error and offline paths.
import { readFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import {
  CANVAS,
  check,
  installRecorder,
  markStart,
  recorded,
  screenshotState,
  statusText,
  waitForStatus,
} from './checks.mjs';
import { pngTextChunks } from './pngText.mjs';

async function openApp(context, url, loadTimeout) {
  const page = await context.newPage();
  // Every text the status region shows while the page loads, sampled from the first script on.
  await page.addInitScript(() => {
    const seen = [];
    window.__hartLoadLog = seen;
    const timer = setInterval(() => {
      const text = document.querySelector('[role="status"]')?.textContent;
      if (text && seen[seen.length - 1] !== text) seen.push(text);
      if (text === 'Ready') clearInterval(timer);
    }, 10);
  });
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (process.env.E2E_DEBUG) console.log(`    [console ${message.type()}] ${message.text().slice(0, 300)}`);
    if (message.type() === 'error' && !/favicon|not assigned to the preferred execution providers/i.test(message.text())) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  await page.goto(url);
  await waitForStatus(page, /^Ready$/, loadTimeout);
  return { page, problems };
}

async function scaleCount(page) {
  const text = await page.locator('.model-info .small').textContent();
  const match = /(\d+) scales/.exec(text ?? '');
  check(match, `the model panel does not say how many scales the model has ("${text}")`);
  return Number(match[1]);
}

async function galleryItems(page) {
  return page.getByRole('list', { name: 'Gallery' }).getByRole('listitem').count();
}

/** The gallery holds the image once the status says "Done"; the list may draw a moment later. */
async function expectGalleryCount(page, count, message) {
  const deadline = Date.now() + 5000;
  let seen = await galleryItems(page);
  while (seen !== count && Date.now() < deadline) {
    await page.waitForTimeout(50);
    seen = await galleryItems(page);
  }
  check(seen === count, `${message} (the gallery holds ${seen} images, expected ${count})`);
}

/**
 * Types a prompt, presses Enter and follows the run to the end. Returns the status log and the
 * times to the first preview and to the final image, measured in the page from the key press.
 */
async function generateAndWatch(page, prompt, runTimeout) {
  const box = page.getByRole('textbox', { name: 'Prompt', exact: true });
  await box.fill(prompt);
  await markStart(page);
  await box.press('Enter');
  await waitForStatus(page, /^Done in \d+\.\d s$/, runTimeout);
  const log = await recorded(page);
  const first = log.find((entry) => /^Scale 1 of/.test(entry.text));
  const done = log.find((entry) => entry.text.startsWith('Done'));
  return { log, firstPreviewMs: first?.t, finalMs: done?.t };
}

function checkScales(log, K, refining) {
  const scales = log.filter((entry) => entry.text.startsWith('Scale'));
  const expected = Array.from({ length: K }, (_, k) => `Scale ${k + 1} of ${K}`);
  check(
    JSON.stringify(scales.map((s) => s.text)) === JSON.stringify(expected),
    `the status did not pass through every scale in order: saw ${JSON.stringify(scales.map((s) => s.text))}`,
  );
  for (let k = 1; k < scales.length; k++) {
    check(scales[k].hash !== scales[k - 1].hash, `the canvas did not change between "${scales[k - 1].text}" and "${scales[k].text}"`);
  }
  check(scales.every((s) => s.opaque), 'a preview was drawn transparent (blank canvas)');
  if (refining) check(log.some((e) => e.text === 'Refining'), 'the status never read "Refining" although residual diffusion is on');
  const done = log[log.length - 1];
  check(done.text.startsWith('Done'), `the run ended on "${done.text}"`);
  check(done.colors > 1, 'the final image is a single flat colour');
  check(done.hash !== scales[scales.length - 1].hash, 'the final image is identical to the last preview');
  return scales;
}

/** The full user journey on one backend. Returns measurements for the report. */
export async function journey({ browser, baseUrl, query, label, expectBadge, shots, timeouts, prompts, step, result }) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  result.label = label;
  try {
    const { page, problems } = await step(`${label}: the page loads its model and names the backend`, async () => {
      const opened = await openApp(context, `${baseUrl}/${query}`, timeouts.load);
      const badge = (await opened.page.locator('.badge').textContent()) ?? '';
      check(badge.includes(expectBadge.name), `the backend badge reads "${badge}", expected ${expectBadge.name}`);
      if (expectBadge.reason) check(expectBadge.reason.test(badge), `the badge does not give the reason: "${badge}"`);
      result.badge = badge;
      const loadLog = await opened.page.evaluate(() => window.__hartLoadLog);
      for (const phase of expectBadge.phases) {
        check(loadLog.includes(`Loading model (${phase})`), `loading never showed the phase "${phase}": ${JSON.stringify(loadLog)}`);
      }
      for (const phase of expectBadge.absentPhases ?? []) {
        check(!loadLog.includes(`Loading model (${phase})`), `loading showed the phase "${phase}", which should not run here: ${JSON.stringify(loadLog)}`);
      }
      await screenshotState(opened.page, shots, `${label}-ready`, { texts: ['Ready', expectBadge.name] });
      return opened;
    });
    const K = await scaleCount(page);
    await installRecorder(page);

    await step(`${label}: words the model does not know are pointed out before generating`, async () => {
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a red zebra on a blue background');
      const hint = page.locator('#unknown-words');
      await hint.waitFor({ timeout: 10_000 }).catch(() => undefined);
      const text = (await hint.textContent().catch(() => '')) ?? '';
      const flagged = await hint.locator('mark').allTextContents();
      check(/Unknown to this model/.test(text) && JSON.stringify(flagged) === '["zebra"]', `expected only "zebra" flagged, got ${JSON.stringify(flagged)} (hint: "${text}")`);
    });

    await step(`${label}: Enter generates; status passes every "Scale k of K", canvas changes each scale, final image`, async () => {
      const run = await generateAndWatch(page, prompts[0], timeouts.run);
      checkScales(run.log, K, true);
      result.firstPreviewMs = run.firstPreviewMs;
      result.finalMs = run.finalMs;
      result.pageMetrics = await page.locator('.run-times').textContent();
      await expectGalleryCount(page, 1, 'the finished image is not in the gallery');
      await screenshotState(page, shots, `${label}-done`, { texts: [prompts[0], 'Done in'], canvasShown: true });
    });

    await step(`${label}: the timeline scrubs back to an earlier scale`, async () => {
      const canvas = page.locator(CANVAS);
      const before = await canvas.evaluate((c) => c.toDataURL());
      await page.getByRole('button', { name: /^Show scale 2 / }).click();
      const earlier = await canvas.evaluate((c) => c.toDataURL());
      check(earlier !== before, 'picking scale 2 on the timeline did not change the canvas');
      await page.getByRole('button', { name: 'Show the final image' }).click();
      check((await canvas.evaluate((c) => c.toDataURL())) === before, 'picking the final frame did not bring the final image back');
    });

    await step(`${label}: the gallery entry survives a reload`, async () => {
      await page.reload();
      await waitForStatus(page, /^Ready$/, timeouts.load);
      const items = page.getByRole('list', { name: 'Gallery' }).getByRole('listitem');
      check((await items.count()) === 1, `after reload the gallery holds ${await items.count()} images`);
      check((await items.first().textContent()).includes(prompts[0]), 'the reloaded gallery entry lost its prompt');
      await installRecorder(page);
    });

    await step(`${label}: download as PNG carries prompt, seed, settings and model`, async () => {
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: `Download “${prompts[0]}” as PNG` }).click(),
      ]);
      const file = await download.path();
      const bytes = new Uint8Array(readFileSync(file));
      const text = pngTextChunks(bytes);
      check(text.prompt === prompts[0], `the PNG's prompt is "${text.prompt}"`);
      check(/^\d+$/.test(text.seed ?? ''), `the PNG's seed is "${text.seed}"`);
      const settings = JSON.parse(text.settings ?? '{}');
      check(typeof settings.cfg === 'number' && typeof settings.residual === 'boolean', `the PNG's settings are "${text.settings}"`);
      check(Boolean(text.model), 'the PNG names no model');
      const png = PNG.sync.read(Buffer.from(bytes));
      check(png.width > 1 && png.width === png.height, `the PNG is ${png.width}×${png.height}`);
      check(download.suggestedFilename().endsWith('.png'), `the download is named ${download.suggestedFilename()}`);
      result.pngText = { prompt: text.prompt, seed: text.seed, model: text.model };
    });

    await step(`${label}: Cancel stops a run at once, the next run completes`, async () => {
      const box = page.getByRole('textbox', { name: 'Prompt', exact: true });
      await box.fill(prompts[1]);
      await markStart(page);
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Scale [2-9]\d* of/, timeouts.run, /^Done/);
      await page.getByRole('button', { name: 'Cancel' }).click();
      await waitForStatus(page, /^Cancelled$/, 2000);
      await screenshotState(page, shots, `${label}-cancelled`, { texts: ['Cancelled'], canvasShown: true, minColors: 1 });
      await expectGalleryCount(page, 1, 'a cancelled run was added to the gallery');
      const run = await generateAndWatch(page, prompts[1], timeouts.run);
      checkScales(run.log, K, true);
      await expectGalleryCount(page, 2, 'the run after a cancel did not reach the gallery');
      // A Generate while a run is going replaces it: one new gallery entry, never two at once.
      await box.fill(prompts[0]);
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Scale [2-9]\d* of/, timeouts.run, /^Done/);
      await box.fill(prompts[1]);
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Done in/, timeouts.run);
      const items = page.getByRole('list', { name: 'Gallery' }).getByRole('listitem');
      await expectGalleryCount(page, 3, 'replacing a run must add exactly one image');
      check((await items.first().textContent()).includes(prompts[1]), 'the replacing run is not the newest gallery image');
      await screenshotState(page, shots, `${label}-gallery`, { texts: ['Gallery', prompts[1]], canvasShown: true });
    });

    await step(`${label}: "Vary from scale k" keeps the previews of scales 1…k−1 and draws a new image from scale k`, async () => {
      const k = Math.max(2, K - 2);
      const canvas = page.locator(CANVAS);
      const frame = async (name) => {
        await page.getByRole('button', { name }).click();
        return canvas.evaluate((c) => c.toDataURL());
      };
      const kept = [];
      for (let j = 1; j < k; j++) kept.push(await frame(new RegExp(`^Show scale ${j} `)));
      const finalBefore = await frame('Show the final image');
      await markStart(page);
      await page.getByRole('button', { name: `Vary from scale ${k}` }).click();
      await waitForStatus(page, /^Done in \d+\.\d s$/, timeouts.run);
      checkScales(await recorded(page), K, true);
      await expectGalleryCount(page, 4, 'the varied image did not reach the gallery');
      const items = page.getByRole('list', { name: 'Gallery' }).getByRole('listitem');
      check((await items.first().textContent()).includes(`varied from scale ${k}`), 'the newest gallery image does not say it was varied');
      for (let j = 1; j < k; j++) check((await frame(new RegExp(`^Show scale ${j} `))) === kept[j - 1], `the preview of kept scale ${j} changed`);
      check((await frame('Show the final image')) !== finalBefore, 'the varied image is the image it was varied from');
    });

    check(problems.length === 0, `the page logged errors: ${problems.join(' | ')}`);
    await page.close();
  } finally {
    await context.close();
  }
  return result;
}

/** A model URL that does not exist: the page says which file failed, in words. */
export async function errorJourney({ browser, baseUrl, query, shots, timeouts, step }) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    await step('error: a failed model load keeps the loaded model usable; relative URLs load, javascript: is refused, downloaded models open', async () => {
      const page = await context.newPage();
      await page.goto(`${baseUrl}/${query}`);
      await waitForStatus(page, /^Ready$/, timeouts.load);
      const panel = page.getByRole('region', { name: 'Model' });
      const box = page.getByRole('textbox', { name: 'Model URL' });
      const loadButton = page.getByRole('button', { name: 'Load', exact: true });
      const alertText = async (pattern) => {
        await page.getByRole('alert').filter({ hasText: pattern }).waitFor({ timeout: timeouts.load });
        return (await page.getByRole('alert').textContent()) ?? '';
      };

      // A missing package: the banner names the URL, the file and the cause; the model stays.
      await box.fill(`${baseUrl}/models/does-not-exist/`);
      await loadButton.click();
      const alert = await alertText(/does-not-exist/);
      check(/manifest\.json/.test(alert) && /404/.test(alert), `the error does not name the URL, file and cause: "${alert}"`);
      await screenshotState(page, shots, 'error-missing-model', { texts: ['The model could not be loaded', 'manifest.json'] });
      await waitForStatus(page, /^Ready$/, timeouts.load);
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a red circle on a blue background');
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Done in/, timeouts.run);

      // javascript: is refused in words, nothing is unloaded. (After the run the status keeps
      // "Done in" while the model is ready.)
      await box.fill('javascript:alert(1)');
      await loadButton.click();
      await alertText(/not an http\(s\) address/);
      await waitForStatus(page, /^(Ready|Done in)/, timeouts.load);

      // A path relative to the page loads, as ?model= takes it.
      await box.fill('/e2e-tiny/');
      await loadButton.click();
      await panel.getByText(/from \/e2e-tiny\//).waitFor({ timeout: timeouts.load });
      await waitForStatus(page, /^(Ready|Done in)/, timeouts.load);

      // Back to the first model from Downloaded models.
      const downloaded = page.getByRole('group', { name: 'Downloaded models' });
      const other = downloaded.getByRole('listitem').filter({ hasNotText: 'loaded now' }).first();
      await other.getByRole('button', { name: /^Open / }).click();
      await panel.getByText(/from \/e2e-tiny\//).waitFor({ state: 'detached', timeout: timeouts.load });
      await waitForStatus(page, /^(Ready|Done in)/, timeouts.load);
      check(!(await page.getByRole('button', { name: 'Generate' }).isDisabled()), 'Generate is disabled after opening a downloaded model');
    });
    await step('error: "Cancel loading" stops a load that hangs and the loaded model stays usable', async () => {
      const page = await context.newPage();
      await page.goto(`${baseUrl}/${query}`);
      await waitForStatus(page, /^Ready$/, timeouts.load);
      // The test server never answers under /e2e-hang/.
      await page.getByRole('textbox', { name: 'Model URL' }).fill('/e2e-hang/');
      await page.getByRole('button', { name: 'Load', exact: true }).click();
      await waitForStatus(page, /^Loading model/, timeouts.load);
      await page.getByRole('button', { name: 'Cancel loading' }).click();
      await waitForStatus(page, /^Ready$/, timeouts.load);
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a red circle on a blue background');
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Done in/, timeouts.run);
    });
    await step('error: a ?model= that is no URL is reported and the default model opens', async () => {
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(`${baseUrl}/?backend=wasm&model=http%3A%2F%2F%5B`);
      await page.waitForSelector('[role="status"]', { timeout: 30_000 }).catch(async () => {
        const body = ((await page.locator('body').textContent()) ?? '').trim();
        throw new Error(`the page shows no app (body: "${body.slice(0, 200)}"; errors: ${errors.join(' | ')})`);
      });
      await waitForStatus(page, /^Ready$/, timeouts.load);
      const alert = (await page.getByRole('alert').textContent()) ?? '';
      check(/The page address/.test(alert) && /"http:\/\/\[" is not a URL/.test(alert), `the banner does not say the model option is no URL: "${alert}"`);
      check(errors.length === 0, `the page threw: ${errors.join(' | ')}`);
    });
    await step('error: a reload right at "Done in" keeps the image in the gallery, three times', async () => {
      // A context of its own: an empty gallery, counted exactly.
      const fresh = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      try {
        const page = await fresh.newPage();
        await page.goto(`${baseUrl}/${query}`);
        await waitForStatus(page, /^Ready$/, timeouts.load);
        for (let n = 1; n <= 3; n++) {
          await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill(`a red circle on a blue background ${n}`);
          await page.getByRole('button', { name: 'Generate' }).click();
          await waitForStatus(page, /^Done in/, timeouts.run);
          await page.reload();
          await waitForStatus(page, /^Ready$/, timeouts.load);
          // The list is read from IndexedDB after the page starts: give it a moment to draw.
          await expectGalleryCount(page, n, `an image was lost by reload ${n} right at "Done in"`);
        }
      } finally {
        await fresh.close();
      }
    });
    await step('error: a 40 KB prompt runs and its warning stays one short line', async () => {
      const page = await context.newPage();
      await page.goto(`${baseUrl}/${query}`);
      await waitForStatus(page, /^Ready$/, timeouts.load);
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('red circle '.repeat(4000));
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Done in/, timeouts.run);
      const warnings = await page.locator('.run-times .warn').allTextContents();
      const cut = warnings.find((w) => /were cut/.test(w));
      check(cut && cut.length < 300, `expected one short warning saying what was cut, got ${JSON.stringify(warnings.map((w) => w.slice(0, 200)))}`);
      const height = await page.evaluate(() => document.documentElement.scrollHeight);
      check(height < 3000, `the page is ${height} px tall after a long prompt`);
    });
  } finally {
    await context.close();
  }
}

/**
 * After one visit, the app and the model load without a network. `server` names the server in the
 * step (servers differ in their headers: `vite preview` sends `Vary: Origin`); screenshots are
 * taken when `shots` is given.
 */
export async function offlineJourney({ browser, baseUrl, query, shots, timeouts, prompts, step, server }) {
  const context = await browser.newContext({ viewport: { width: 420, height: 900 } });
  const name = server ? `offline (${server})` : 'offline';
  try {
    await step(`${name}: a second visit loads app and model without network`, async () => {
      const page = await context.newPage();
      await page.goto(`${baseUrl}/${query}`);
      await waitForStatus(page, /^Ready$/, timeouts.load);
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill(prompts[1]);
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Done in/, timeouts.run);
      // The service worker claims the page once it is active; wait for that before going offline.
      await page.waitForFunction(() => navigator.serviceWorker?.controller !== null, null, { timeout: timeouts.load });
      // …and until it has kept the build files the first visit loaded before it existed.
      const scripts = await page.evaluate(() =>
        performance
          .getEntriesByType('resource')
          .map((entry) => entry.name)
          .filter((url) => new URL(url).pathname.startsWith('/assets/')),
      );
      check(scripts.some((url) => url.includes('worker')), `the engine worker script is not among the loaded files: ${scripts.join(', ')}`);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const kept = await page.evaluate(async (urls) => {
          const cache = await caches.open('hart-web-shell-v1');
          return (await Promise.all(urls.map((u) => cache.match(u, { ignoreVary: true })))).every(Boolean);
        }, scripts);
        if (kept) break;
        check(Date.now() < deadline, 'the service worker never kept the page scripts');
        await page.waitForTimeout(200);
      }
      await context.setOffline(true);
      await page.reload();
      // A reload that cannot get the build files leaves an empty page: say so instead of timing out.
      await page.waitForSelector('[role="status"]', { timeout: 30_000 }).catch(async () => {
        const body = ((await page.locator('body').textContent()) ?? '').trim();
        throw new Error(`the offline reload shows no app (body: "${body.slice(0, 200)}")`);
      });
      await waitForStatus(page, /^Ready$/, timeouts.load);
      await installRecorder(page);
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill(prompts[0]);
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Done in/, timeouts.run);
      check((await statusText(page)).startsWith('Done'), 'offline generation did not finish');
      if (shots) await screenshotState(page, shots, 'mobile-offline-done', { texts: ['Done in', prompts[0]], canvasShown: true });
    });
  } finally {
    await context.close();
  }
}

/** On a software WebGPU adapter, 'auto' prefers WASM and the badge says why. */
export async function autoPicksWasmJourney({ browser, baseUrl, query, timeouts, step }) {
  const context = await browser.newContext();
  try {
    await step('auto on a software WebGPU adapter picks WASM and says why', async () => {
      const { page } = await openApp(context, `${baseUrl}/${query}`, timeouts.load);
      const badge = (await page.locator('.badge').textContent()) ?? '';
      check(badge.startsWith('WASM'), `the badge reads "${badge}"`);
      check(/software|fallback|swiftshader/i.test(badge), `the badge does not say the adapter is a software one: "${badge}"`);
    });
  } finally {
    await context.close();
  }
}

/**
 * Two tabs open the same model at once on a first visit: both load it, and each file of the
 * package crosses the network once (the second tab waits for the first's download, then reads
 * the cache). `packagePath` is served slowly, so the two loads overlap.
 */
export async function twoTabsJourney({ browser, baseUrl, query, packagePath, requests, timeouts, step }) {
  const context = await browser.newContext();
  try {
    await step('two tabs: the same model opened twice at once downloads each file once and loads in both', async () => {
      const [first, second] = await Promise.all([0, 1].map(() => openApp(context, `${baseUrl}/${query}`, timeouts.load)));
      const problems = [...first.problems, ...second.problems];
      check(problems.length === 0, `the pages logged errors: ${problems.join(' | ')}`);
      const files = requests.filter((p) => p.startsWith(packagePath) && !p.endsWith('/manifest.json'));
      check(files.length > 0, `no file of ${packagePath} was requested`);
      const twice = [...new Set(files.filter((p, i) => files.indexOf(p) !== i))];
      check(twice.length === 0, `downloaded more than once: ${twice.join(', ')}`);
    });
  } finally {
    await context.close();
  }
}

/** `npm start` serves the same app from sources: load a model, generate once. */
export async function devServerJourney({ browser, baseUrl, query, timeouts, prompts, step }) {
  const context = await browser.newContext();
  try {
    await step('dev server: the page loads a model and generates', async () => {
      const { page, problems } = await openApp(context, `${baseUrl}/${query}`, timeouts.load);
      await installRecorder(page);
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill(prompts[0]);
      await page.getByRole('button', { name: 'Generate' }).click();
      try {
        await waitForStatus(page, /^Done in/, timeouts.run);
      } catch (error) {
        throw new Error(`${error.message}; page log: ${problems.join(' | ') || 'nothing'}`);
      }
      check(problems.length === 0, `the page logged errors: ${problems.join(' | ')}`);
    });
  } finally {
    await context.close();
  }
}

/** A package from the person's disk: the folder input (the fallback of showDirectoryPicker). */
export async function localFolderJourney({ browser, baseUrl, query, folder, modelName, timeouts, step }) {
  const context = await browser.newContext();
  try {
    await step('local folder: a package picked from disk loads and generates', async () => {
      const { page } = await openApp(context, `${baseUrl}/${query}`, timeouts.load);
      await page.getByLabel('Model folder').setInputFiles(folder);
      await waitForStatus(page, /^Loading model/, timeouts.load);
      await waitForStatus(page, /^Ready$/, timeouts.load);
      const name = (await page.locator('.model-name').textContent()) ?? '';
      check(name === modelName, `the model panel names "${name}", expected ${modelName}`);
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a red circle on a blue background');
      await page.getByRole('button', { name: 'Generate' }).click();
      await waitForStatus(page, /^Done in/, timeouts.run);
    });
  } finally {
    await context.close();
  }
}

/**
 * The built app on a static host as it is configured (`isolation`: COOP/COEP sent or not; `csp`:
 * the Content-Security-Policy header sent besides the <meta> in index.html): it loads, names its
 * backend (`expectReason`), and generates one image, with no policy violation in the page or its
 * workers and no error in the console.
 */
export async function staticHostJourney({ browser, baseUrl, query, label, isolated, expectReason, timeouts, prompts, step }) {
  const context = await browser.newContext();
  try {
    await step(label, async () => {
      // Violations in the page arrive as events. A worker's own (its policy comes from its
      // response header) show in what they stop: a refused WebAssembly compile fails the load;
      // console errors from workers count as problems too.
      await context.addInitScript(() => {
        window.__cspViolations = [];
        document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}`));
      });
      const workerProblems = [];
      context.on('page', (page) =>
        page.on('worker', (worker) => worker.on?.('console', (message) => message.type() === 'error' && workerProblems.push(`worker console error: ${message.text()}`))),
      );
      const { page, problems } = await openApp(context, `${baseUrl}/${query}`, timeouts.load);
      const facts = await page.evaluate(() => ({
        isolated: window.crossOriginIsolated,
        meta: document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.getAttribute('content') ?? '',
        inlineScripts: [...document.scripts].filter((script) => !script.src).length,
      }));
      check(facts.isolated === isolated, `crossOriginIsolated is ${facts.isolated}, expected ${isolated}`);
      check(/script-src 'self' 'wasm-unsafe-eval'/.test(facts.meta), `index.html carries no Content-Security-Policy <meta> ("${facts.meta}")`);
      check(facts.inlineScripts === 0, `the page has ${facts.inlineScripts} inline scripts`);
      const badge = (await page.locator('.badge').textContent()) ?? '';
      check(expectReason.test(badge), `the badge reads "${badge}", expected ${expectReason}`);
      await installRecorder(page);
      await generateAndWatch(page, prompts[0], timeouts.run);
      await expectGalleryCount(page, 1, 'the image did not reach the gallery');
      const violations = await page.evaluate(() => window.__cspViolations);
      const all = [...problems, ...workerProblems, ...violations.map((v) => `policy violation: ${v}`)];
      check(all.length === 0, all.join('; '));
    });
  } finally {
    await context.close();
  }
}

/**
 * A model of the catalog imported in the page: a person clicks Import on the stand-in published
 * checkpoint (served by a local hub), watches the download/verify/compile steps, and the
 * imported package loads, shows in Downloaded models and generates. An entry whose skeleton is
 * not served says so in one line. `result` gets the import's time and the page's memory.
 */
export async function importJourney({ browser, baseUrl, query, entryName, missingSkeletonName, timeouts, prompts, step, result }) {
  const context = await browser.newContext();
  try {
    await step('import: the stand-in published checkpoint is imported in the page, listed as downloaded, and generates', async () => {
      const { page, problems } = await openApp(context, `${baseUrl}/${query}`, timeouts.load);
      const started = Date.now();
      await page.getByRole('button', { name: `Import ${entryName}` }).click();
      const steps = page.getByLabel(`Import of ${entryName}`);
      await steps.getByText('Download and convert').waitFor({ timeout: 60_000 });
      const done = page.getByText(new RegExp(`^Imported ${entryName.replace(/[().]/g, '\\$&')}: \\d+ files`));
      await done.waitFor({ timeout: timeouts.load });
      result.importSeconds = (Date.now() - started) / 1000;
      result.importLine = (await done.textContent()) ?? '';
      await waitForStatus(page, /^Ready$/, timeouts.load);
      const label = (await page.locator('.model-name').textContent()) ?? '';
      check(label.length > 0, 'no model name shown after the import');
      const downloaded = page.getByRole('group', { name: 'Downloaded models' });
      await downloaded.getByText('hart-0.7b-1024px').waitFor({ timeout: 20_000 });
      result.memory = await page.evaluate(async () => {
        const measure = performance.measureUserAgentSpecificMemory;
        if (typeof measure !== 'function' || !window.crossOriginIsolated) return undefined;
        return (await measure.call(performance)).bytes;
      }).catch(() => undefined);
      await installRecorder(page);
      await generateAndWatch(page, prompts[0], timeouts.run);
      await expectGalleryCount(page, 1, 'the image of the imported model did not reach the gallery');
      check(problems.length === 0, problems.join('; '));
    });
    await step('import: a model whose skeleton is not served says so in one line', async () => {
      const { page } = await openApp(context, `${baseUrl}/${query}`, timeouts.load);
      await page.getByRole('button', { name: `Import ${missingSkeletonName}` }).click();
      const alert = page.getByRole('alert').filter({ hasText: 'Import failed' });
      await alert.waitFor({ timeout: 60_000 });
      const text = (await alert.textContent()) ?? '';
      check(/skeleton is not available at .*\(this copy of the app does not ship it; it is made with tools\/py convert\.skeleton, see docs\/convert\.md\)$/.test(text), `the failure reads "${text}"`);
      check(!text.includes('\n') && !/404|at .*\.ts:\d+/.test(text.replace(/http:\/\/[^ ]+/g, '')), `the failure is not one clear line: "${text}"`);
    });
  } finally {
    await context.close();
  }
}
