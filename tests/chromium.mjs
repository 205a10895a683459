// Headless Debian Chromium for every browser suite (engine checks and e2e), with the flags
// our machines need: no sandbox in containers, nothing that reaches the network by itself.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const BASE_FLAGS = [
  '--no-sandbox',
  '--headless=new',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
/** WebGPU in headless Chromium; on a machine without a GPU it is SwiftShader's software adapter. */
export const WEBGPU_FLAGS = ['--enable-unsafe-webgpu'];

/** Runs fn(browser) with a fresh Chromium and always closes it. */
export async function withChromium(flags, fn) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_FLAGS, ...flags] });
  try {
    return await fn(browser);
  } finally {
    await browser.close();
  }
}

/**
 * A check script's end: runs check(), which returns whether everything passed (a throw counts as
 * a failure, printed), then always cleanup(), then exits 0 or 1.
 */
export async function finishCheck(check, cleanup) {
  let ok = false;
  try {
    ok = await check();
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
  } finally {
    await cleanup();
  }
  process.exit(ok ? 0 : 1);
}
