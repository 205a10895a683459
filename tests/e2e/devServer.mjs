// Starts `vite` (the dev server of `npm start`) or `vite preview` (the production build served by
// `npm run preview`) on a free port.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

export function startDevServer(root) {
  return startVite(root, [], /ready in/i);
}

/** `vite preview` serves dist/ as built; the caller builds it first. */
export function startPreviewServer(root) {
  return startVite(root, ['preview'], /Local:/i);
}

/** Terminal colour and style codes removed. */
function withoutAnsi(text) {
  return text.replace(/\x1b\[[0-9;]*m/g, '');
}

async function startVite(root, command, ready) {
  const port = await freePort();
  const vite = spawn(path.join(root, 'node_modules/.bin/vite'), [...command, '--host', '127.0.0.1', '--port', String(port), '--strictPort'], {
    cwd: root,
    // Plain text to match against: vite colours its banner when CI is set, splitting "Local:".
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  vite.stdout.on('data', (chunk) => (output += chunk));
  vite.stderr.on('data', (chunk) => (output += chunk));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vite ${command[0] ?? 'dev server'} did not start: ${output}`)), 30_000);
    const onData = () => {
      if (ready.test(withoutAnsi(output))) {
        clearTimeout(timer);
        resolve();
      }
    };
    vite.stdout.on('data', onData);
    vite.stderr.on('data', onData);
    vite.once('exit', (code) => reject(new Error(`vite ${command[0] ?? 'dev server'} exited (${code}): ${output}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    /** What the dev server printed, for failure reports. */
    output: () => output,
    close: () =>
      new Promise((resolve) => {
        if (vite.exitCode !== null) return resolve();
        vite.once('exit', () => resolve());
        vite.kill('SIGTERM');
      }),
  };
}
