// `npm test`: every suite, in order, failing loudly. Python checks the reference model and
// the exported graphs; vitest checks the engine and the UI; the e2e runner drives Chromium.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const python = process.env.HART_PYTHON ?? '/usr/bin/python3';

const suites = [
  { name: 'typecheck', cmd: 'npx', args: ['tsc', '--noEmit'], cwd: root },
  {
    name: 'python (reference model, export, converter, lab, bench)',
    cmd: python,
    args: ['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.', '-v'],
    cwd: path.join(root, 'tools'),
  },
  { name: 'vitest (engine, UI)', cmd: 'npx', args: ['vitest', 'run'], cwd: root },
  { name: 'engine parity and a lost WebGPU device in Chromium (WebGPU, WASM)', cmd: 'node', args: ['tests/engine/browser/run.mjs'], cwd: root },
  { name: 'fused attention in Chromium (WebGPU, WASM)', cmd: 'node', args: ['tests/engine/browser/attention.mjs'], cwd: root },
  { name: 'e2e (headless Chromium)', cmd: 'node', args: ['tests/e2e/run.mjs'], cwd: root },
];

const only = process.argv.slice(2);
const results = [];
for (const suite of suites) {
  if (only.length && !only.some((o) => suite.name.startsWith(o))) continue;
  if (suite.cmd === 'node' && !existsSync(path.join(root, suite.args[0]))) {
    console.error(`\n✗ ${suite.name}: ${suite.args[0]} is missing`);
    results.push({ name: suite.name, ok: false, seconds: 0 });
    continue;
  }
  console.log(`\n▶ ${suite.name}`);
  const started = Date.now();
  const run = spawnSync(suite.cmd, suite.args, { cwd: suite.cwd, stdio: 'inherit' });
  const ok = run.status === 0;
  results.push({ name: suite.name, ok, seconds: (Date.now() - started) / 1000 });
}

console.log('\nSummary');
for (const r of results) console.log(`  ${r.ok ? '✓' : '✗'} ${r.name} (${r.seconds.toFixed(1)} s)`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
