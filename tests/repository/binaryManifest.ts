// The repository's shipped binaries: every tracked binary file over a size limit must be listed
// in binaries.json with its size and sha256. A clone carries every version of every binary ever
// committed, so a large file that changes unnoticed makes every future clone heavier; listing
// each one makes such a change a deliberate edit that a reviewer sees.
//
//   node --import tsx tests/repository/binaryManifest.ts           check, print what differs
//   node --import tsx tests/repository/binaryManifest.ts --write   rewrite the sizes and hashes
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MANIFEST_PATH = path.join(ROOT, 'binaries.json');

export interface BinaryEntry {
  bytes: number;
  sha256: string;
  /** Why a user needs this file in every clone. */
  why: string;
}

export interface BinaryManifest {
  /** Binaries above this many bytes must be listed. */
  limitBytes: number;
  files: Record<string, BinaryEntry>;
}

/** Git's own test for binary content: a NUL byte in the first 8000 bytes. */
export function isBinary(bytes: Uint8Array): boolean {
  return bytes.subarray(0, 8000).includes(0);
}

export function trackedFiles(root = ROOT): string[] {
  return execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 ** 2 })
    .split('\0')
    .filter(Boolean);
}

/** The tracked binaries over the limit, with their current size and hash. */
export function largeBinaries(limitBytes: number, root = ROOT): Map<string, { bytes: number; sha256: string }> {
  const found = new Map<string, { bytes: number; sha256: string }>();
  for (const file of trackedFiles(root)) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path.join(root, file));
    } catch {
      continue; // deleted in the working tree but not yet from the index
    }
    if (bytes.length > limitBytes && isBinary(bytes)) {
      found.set(file, { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
  }
  return found;
}

export function readManifest(file = MANIFEST_PATH): BinaryManifest {
  return JSON.parse(readFileSync(file, 'utf8')) as BinaryManifest;
}

/** What differs between the tree and the manifest, one sentence per file; empty when they agree. */
export function manifestProblems(manifest: BinaryManifest, actual: Map<string, { bytes: number; sha256: string }>): string[] {
  const problems: string[] = [];
  for (const [file, now] of actual) {
    const listed = manifest.files[file];
    if (!listed) problems.push(`${file} (${now.bytes} bytes) is a binary over ${manifest.limitBytes} bytes that binaries.json does not list.`);
    else if (listed.sha256 !== now.sha256 || listed.bytes !== now.bytes) problems.push(`${file} changed (${listed.bytes} → ${now.bytes} bytes) without its entry in binaries.json.`);
    else if (!listed.why.trim()) problems.push(`${file}: binaries.json does not say why a user needs it.`);
  }
  for (const file of Object.keys(manifest.files)) {
    if (!actual.has(file)) problems.push(`${file} is listed in binaries.json but is not a tracked binary over the limit (remove its entry).`);
  }
  return problems;
}

function main(): void {
  const manifest = readManifest();
  const actual = largeBinaries(manifest.limitBytes);
  if (process.argv.includes('--write')) {
    const files: Record<string, BinaryEntry> = {};
    for (const [file, now] of [...actual].sort(([a], [b]) => a.localeCompare(b))) {
      files[file] = { ...now, why: manifest.files[file]?.why ?? '' };
    }
    writeFileSync(MANIFEST_PATH, `${JSON.stringify({ ...manifest, files }, null, 2)}\n`);
    const unexplained = Object.entries(files).filter(([, e]) => !e.why).map(([f]) => f);
    console.log(`binaries.json: ${Object.keys(files).length} files${unexplained.length ? `; say why a user needs: ${unexplained.join(', ')}` : ''}`);
    return;
  }
  const problems = manifestProblems(manifest, actual);
  for (const p of problems) console.log(p);
  process.exit(problems.length ? 1 : 0);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
