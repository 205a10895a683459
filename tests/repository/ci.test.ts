// .ci/run on a fresh machine: another apt (unattended upgrades) may hold the lock at first.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('.ci/run', () => {
  it('makes every apt-get wait for the dpkg lock instead of failing at once', () => {
    const script = readFileSync(path.join(ROOT, '.ci/run'), 'utf8');
    const wait = /^APT_WAIT=\(-o DPkg::Lock::Timeout=(\d+)\)$/m.exec(script);
    expect(Number(wait?.[1])).toBeGreaterThanOrEqual(300);
    const calls = script.split('\n').filter((line) => /^\s*\$SUDO apt-get /.test(line));
    expect(calls.length).toBeGreaterThan(0);
    for (const call of calls) expect(call).toContain('apt-get "${APT_WAIT[@]}" ');
  });
});
