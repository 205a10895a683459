// The import tests' fixtures, built once per content of tools/ and shared by the test files:
// the stand-in published files (tools/py convert.fake_published), skeletons (tools/py
// convert.skeleton) and the Python converter's packages (tools/py convert) to compare with.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, toolsPy } from './python';

/** Packages the tests compare: [name, converter flags, skeleton]. */
export const PACKAGES = {
  fp32: { flags: ['--text-encoder-bits', '4'], skeleton: 'plain', bits: 4, fp16: false },
  fp16: { flags: ['--fp16', '--text-encoder-bits', '4'], skeleton: 'fp16', bits: 4, fp16: true },
  int8: { flags: ['--fp16', '--text-encoder-bits', '8'], skeleton: 'fp16', bits: 8, fp16: true },
  fp32text: { flags: ['--fp16', '--text-encoder-bits', '32'], skeleton: 'fp16', bits: 32, fp16: true },
} as const;
export type PackageName = keyof typeof PACKAGES;

function hashTree(folder: string, hash = createHash('sha256')): ReturnType<typeof createHash> {
  for (const name of readdirSync(folder).sort()) {
    const full = path.join(folder, name);
    if (name === '__pycache__' || name === 'tests' || name === 'lab') continue;
    if (statSync(full).isDirectory()) hashTree(full, hash);
    else if (/\.(py|mjs|txt)$/.test(name)) hash.update(name).update(readFileSync(full));
  }
  return hash;
}

export interface Fixture {
  root: string;
  hart: string;
  qwen: string;
  skeleton: (name: 'plain' | 'fp16') => string;
  converted: (name: PackageName) => string;
}

/** Builds (or finds) every fixture; minutes the first time on a small machine. */
export function publishedFixture(): Fixture {
  const key = hashTree(path.join(ROOT, 'tools')).digest('hex').slice(0, 16);
  const root = path.join(tmpdir(), `hart-import-fixture-${key}`);
  const fixture: Fixture = {
    root,
    hart: path.join(root, 'fake/hart'),
    qwen: path.join(root, 'fake/qwen'),
    skeleton: (name) => path.join(root, `skeleton-${name}`),
    converted: (name) => path.join(root, `converted-${name}`),
  };
  if (existsSync(path.join(root, 'complete'))) return fixture;
  // One builder at a time (vitest runs the test files that share it in parallel): the others
  // wait for it, unless its lock is older than a build can take.
  const lock = `${root}.lock`;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (existsSync(path.join(root, 'complete'))) return fixture;
      const held = statSync(lock, { throwIfNoEntry: false });
      if (held && Date.now() - held.mtimeMs > 40 * 60_000) rmSync(lock, { recursive: true, force: true });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
    }
  }
  try {
    if (!existsSync(path.join(root, 'complete'))) build(root);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
  return fixture;
}

function build(root: string): void {
  const work = `${root}.${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const fake = path.join(work, 'fake');
  toolsPy(['convert.fake_published', '--out', fake]);
  const common = ['--hart', path.join(fake, 'hart'), '--qwen', path.join(fake, 'qwen')];
  toolsPy(['convert.skeleton', ...common, '--out', path.join(work, 'skeleton-plain'), '--text-encoder-bits', '4']);
  toolsPy(['convert.skeleton', ...common, '--out', path.join(work, 'skeleton-fp16'), '--fp16', '--text-encoder-bits', 'all']);
  for (const [name, spec] of Object.entries(PACKAGES)) toolsPy(['convert', ...common, '--out', path.join(work, `converted-${name}`), ...spec.flags]);
  mkdirSync(path.join(work, 'complete'));
  rmSync(root, { recursive: true, force: true });
  renameSync(work, root);
}

/** The preview map inside a converted package (its two tensors' bytes, located by the weight map). */
export function convertedPreview(fixture: Fixture, name: PackageName): { weight: Float32Array; bias: Float32Array } {
  const map = JSON.parse(readFileSync(path.join(fixture.skeleton(PACKAGES[name].skeleton), 'weights.json'), 'utf8'));
  const data = readFileSync(path.join(fixture.converted(name), 'preview.onnx.data'));
  const part = (which: string) => {
    const segment = map.files['preview.onnx.data'].segments.find((s: { expr: unknown }) => JSON.stringify(s.expr).includes(`"part":"${which}"`));
    return new Float32Array(data.buffer.slice(data.byteOffset + segment.offset, data.byteOffset + segment.offset + segment.length));
  };
  return { weight: part('weight'), bias: part('bias') };
}

/** Files of two package folders that differ (or exist in one only). */
export function differingFiles(a: string, b: string): string[] {
  const names = [...new Set([...readdirSync(a), ...readdirSync(b)])].sort();
  return names.filter((n) => !existsSync(path.join(a, n)) || !existsSync(path.join(b, n)) || !readFileSync(path.join(a, n)).equals(readFileSync(path.join(b, n))));
}
