// Starts `vite` (the dev server of `npm start`) on a free port for the dev-mode check.
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

export async function startDevServer(root) {
  const port = await freePort();
  const vite = spawn(path.join(root, 'node_modules/.bin/vite'), ['--host', '127.0.0.1', '--port', String(port), '--strictPort'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  vite.stdout.on('data', (chunk) => (output += chunk));
  vite.stderr.on('data', (chunk) => (output += chunk));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vite dev server did not start: ${output}`)), 30_000);
    const onData = () => {
      if (/ready in/i.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    vite.stdout.on('data', onData);
    vite.stderr.on('data', onData);
    vite.once('exit', (code) => reject(new Error(`vite dev server exited (${code}): ${output}`)));
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
