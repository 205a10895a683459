// `npm run bench` follows the CLI's exit-status rule: a bad command line or package exits 2
// with one line, before any timing run.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURE } from '../engine/golden';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(tmpdir(), 'hart-bench-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function bench(...args: string[]) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bench.ts', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('npm run bench', () => {
  it('exits 2 with one line naming the flag or the file when the command line or the package is wrong', () => {
    const corrupt = path.join(work, 'corrupt');
    cpSync(FIXTURE, corrupt, { recursive: true });
    writeFileSync(path.join(corrupt, 'manifest.json'), 'not json');
    const cases: [string[], RegExp][] = [
      [['--frobnicate'], /^error: Unknown argument --frobnicate\.$/],
      [['--runs', 'many'], /^error: --runs many: expected a whole number of at least 1\.$/],
      [['--runs', '0'], /^error: --runs 0: expected a whole number of at least 1\.$/],
      [['--backend', 'gpu'], /^error: --backend gpu: expected cpu or wasm\.$/],
      [['--model'], /^error: --model needs a value\.$/],
      [['--model', path.join(work, 'nowhere')], /^error: --model .*nowhere: no such folder\.$/],
      [['--model', corrupt, '--runs', '1'], /^error: manifest\.json: /],
    ];
    for (const [args, message] of cases) {
      const run = bench(...args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(run.stderr.trim()).toMatch(message);
      expect(run.stdout).toBe('');
    }
  });
});
