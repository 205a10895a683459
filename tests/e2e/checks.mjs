// Small helpers shared by the e2e scenarios: assertions, page probes, screenshot checks.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PNG } from 'pngjs';

export class CheckFailed extends Error {}

export function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

export const STATUS = '[role="status"]';
export const CANVAS = 'canvas[aria-label="Generated image"]';

export async function statusText(page) {
  return (await page.locator(STATUS).textContent({ timeout: 2000 }).catch(() => '(no status region)'))?.trim() ?? '';
}

/**
 * Waits until the status region matches `pattern`; gives up at once when it matches `stop`
 * (e.g. the run finished before the state we wait for). The failure message shows where it stood.
 */
export async function waitForStatus(page, pattern, timeout, stop) {
  try {
    await page.waitForFunction(
      ([selector, source, flags, stopSource]) => {
        const text = document.querySelector(selector)?.textContent ?? '';
        if (stopSource && new RegExp(stopSource).test(text)) throw new Error(`status reached "${text}"`);
        return new RegExp(source, flags).test(text);
      },
      [STATUS, pattern.source, pattern.flags, stop?.source],
      { timeout, polling: 50 },
    );
  } catch {
    const alert = await page.locator('[role="alert"]').allTextContents();
    throw new CheckFailed(`status never matched ${pattern} within ${timeout} ms; it reads "${await statusText(page)}"${alert.length ? `; alert: ${alert.join(' ')}` : ''}`);
  }
}

/**
 * Installs a recorder in the page: every change of the status text is logged with the time since
 * `start` and a fingerprint of what the canvas held at that moment (the canvas is drawn in the
 * same React commit as the status text, so they belong together).
 */
export async function installRecorder(page) {
  await page.evaluate(
    ([statusSelector, canvasSelector]) => {
      const status = document.querySelector(statusSelector);
      const canvas = document.querySelector(canvasSelector);
      const log = [];
      const fingerprint = () => {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let hash = 2166136261;
        const colors = new Set();
        for (let i = 0; i < data.length; i += 4) {
          const rgba = (data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3];
          hash = Math.imul(hash ^ rgba, 16777619) >>> 0;
          if (colors.size < 256) colors.add(rgba);
        }
        return { hash, colors: colors.size, opaque: data[3] === 255 };
      };
      const observer = new MutationObserver(() => {
        const text = status.textContent ?? '';
        if (log.length && log[log.length - 1].text === text) return;
        log.push({ text, t: performance.now() - (window.__hartStart ?? 0), ...fingerprint() });
      });
      observer.observe(status, { childList: true, characterData: true, subtree: true });
      window.__hartLog = log;
      window.__hartStart = performance.now();
    },
    [STATUS, CANVAS],
  );
}

export async function markStart(page) {
  await page.evaluate(() => {
    window.__hartLog.length = 0;
    window.__hartStart = performance.now();
  });
}

export async function recorded(page) {
  return page.evaluate(() => window.__hartLog.slice());
}

/** Distinct colours and the spread of a rectangle of an RGBA PNG: 1 colour means blank. */
export function regionStats(pngBytes, box) {
  const png = PNG.sync.read(pngBytes);
  const colors = new Set();
  let sum = 0;
  let sumSq = 0;
  let n = 0;
  const x0 = Math.max(0, Math.floor(box.x));
  const y0 = Math.max(0, Math.floor(box.y));
  const x1 = Math.min(png.width, Math.ceil(box.x + box.width));
  const y1 = Math.min(png.height, Math.ceil(box.y + box.height));
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = (y * png.width + x) * 4;
      const luma = 0.299 * png.data[i] + 0.587 * png.data[i + 1] + 0.114 * png.data[i + 2];
      sum += luma;
      sumSq += luma * luma;
      n++;
      if (colors.size < 4096) colors.add((png.data[i] << 16) | (png.data[i + 1] << 8) | png.data[i + 2]);
    }
  }
  const mean = sum / Math.max(1, n);
  return { colors: colors.size, std: Math.sqrt(Math.max(0, sumSq / Math.max(1, n) - mean * mean)), pixels: n };
}

/**
 * Saves a screenshot into docs/screenshots/ and checks it: the texts that define the state are
 * visible, and the canvas region of the screenshot is not blank when `canvasShown` is set.
 */
export async function screenshotState(page, dir, name, { texts = [], canvasShown = false, minColors = 4 } = {}) {
  mkdirSync(dir, { recursive: true });
  for (const text of texts) {
    const visible = await page.getByText(text, { exact: false }).first().isVisible();
    check(visible, `screenshot ${name}: "${text}" is not visible`);
  }
  const bytes = await page.screenshot({ fullPage: true });
  const file = path.join(dir, `${name}.png`);
  writeFileSync(file, bytes);
  const whole = regionStats(bytes, { x: 0, y: 0, width: 1e5, height: 1e5 });
  check(whole.colors > 16, `screenshot ${name} is nearly blank (${whole.colors} colours)`);
  if (canvasShown) {
    const box = await page.locator(CANVAS).boundingBox();
    check(box, `screenshot ${name}: the canvas is not on screen`);
    // The box is relative to the viewport, the full-page screenshot to the page.
    const scroll = await page.evaluate(() => ({ x: window.scrollX, y: window.scrollY }));
    const region = regionStats(bytes, { ...box, x: box.x + scroll.x, y: box.y + scroll.y });
    check(region.colors >= minColors && region.std > 1, `screenshot ${name}: the canvas region looks blank (${region.colors} colours, std ${region.std.toFixed(2)})`);
  }
  return file;
}
