// Runs a Python snippet with tools/ on the import path (the reference the importer must match).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const PYTHON = process.env.HART_PYTHON ?? '/usr/bin/python3';

export function runPython(code: string, args: string[] = []): string {
  return execFileSync(PYTHON, ['-c', code, ...args], {
    cwd: ROOT,
    env: { ...process.env, PYTHONPATH: path.join(ROOT, 'tools') },
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** `tools/py MODULE ARGS…` from the repository root. */
export function toolsPy(args: string[], timeout = 600_000): string {
  return execFileSync(path.join(ROOT, 'tools/py'), args, { cwd: ROOT, encoding: 'utf8', timeout, maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });
}
