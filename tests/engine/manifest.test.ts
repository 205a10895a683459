import { describe, expect, it } from 'vitest';
import { BadPackageError } from '../../src/engine/errors';
import { createFileMapIO } from '../../src/engine/readers';
import { parseManifest } from '../../src/engine/manifest';
import { neededFiles, readManifest, readTables, readVerified } from '../../src/engine/modelPackage';
import { syntheticPackage } from './manifestFixture';

function ioFor(files: Map<string, Uint8Array>, manifest: unknown) {
  const blobs = new Map<string, Blob>([...files].map(([p, b]) => [p, new Blob([b as Uint8Array<ArrayBuffer>])]));
  blobs.set('manifest.json', new Blob([JSON.stringify(manifest)]));
  return createFileMapIO(blobs, 'test package');
}

function expectPackageError(fn: () => unknown, pattern: RegExp) {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BadPackageError);
    expect((error as BadPackageError).code).toBe('bad-package');
    expect((error as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('expected a BadPackageError');
}

describe('manifest', () => {
  it('accepts a valid manifest', () => {
    const { manifest } = syntheticPackage();
    const parsed = parseManifest(manifest);
    expect(parsed.model.patchNums).toEqual([1, 2]);
    expect(parsed.textEncoder.unkId).toBe(1);
  });

  it('rejects an unknown format or formatVersion, naming the file', () => {
    const { manifest } = syntheticPackage();
    expectPackageError(() => parseManifest({ ...manifest, formatVersion: 2 }), /^manifest\.json: formatVersion is 2; this engine reads version 1 only/);
    expectPackageError(() => parseManifest({ ...manifest, format: 'other' }), /manifest\.json: format is "other"/);
  });

  it('names the field that is wrong', () => {
    const { manifest } = syntheticPackage();
    expectPackageError(() => parseManifest({ ...manifest, model: { ...manifest.model, patchNums: [1, 1] } }), /model\.patchNums\[1\]/);
    expectPackageError(() => parseManifest({ ...manifest, model: { ...manifest.model, phiIndex: [] } }), /model\.phiIndex/);
    expectPackageError(() => parseManifest({ ...manifest, graphs: { ...manifest.graphs, head: undefined } }), /graphs\.head is missing/);
    const tables = { ...manifest.tables, codebook: { ...manifest.tables.codebook, shape: [4, 2] } };
    expectPackageError(() => parseManifest({ ...manifest, tables }), /tables\.codebook\.shape is \[4,2\], expected \[3,2\]/);
  });

  it('reads sampling.guidedScales, guiding every scale (0) when a package predates it', () => {
    const { manifest } = syntheticPackage();
    expect(parseManifest(manifest).sampling.guidedScales).toBe(0);
    expect(parseManifest({ ...manifest, sampling: { ...manifest.sampling, guidedScales: 6 } }).sampling.guidedScales).toBe(6);
    expectPackageError(() => parseManifest({ ...manifest, sampling: { ...manifest.sampling, guidedScales: -1 } }), /sampling\.guidedScales/);
  });

  it('reads sampling.topK as a number (packages before schedules) or a schedule per scale', () => {
    const { manifest } = syntheticPackage();
    expect(parseManifest(manifest).sampling.topK).toBe(0);
    const schedule = { values: [600, 300], from: [0, 7] };
    expect(parseManifest({ ...manifest, sampling: { ...manifest.sampling, topK: schedule } }).sampling.topK).toEqual(schedule);
    expectPackageError(() => parseManifest({ ...manifest, sampling: { ...manifest.sampling, topK: { values: [600, 'x'], from: [0, 7] } } }), /sampling\.topK\.values\[1\]/);
    expectPackageError(() => parseManifest({ ...manifest, sampling: { ...manifest.sampling, topK: { values: [600, 300] } } }), /sampling\.topK\.from must be an array/);
    expectPackageError(() => parseManifest({ ...manifest, sampling: { ...manifest.sampling, topK: { values: [600, 300], from: [0, 7, 9] } } }), /sampling\.topK is .*; it must be a schedule/);
    expectPackageError(() => parseManifest({ ...manifest, sampling: { ...manifest.sampling, topK: [600, 300] } }), /sampling\.topK must be an object/);
  });

  it('rejects paths that leave the package and files the manifest does not list', () => {
    const { manifest } = syntheticPackage();
    expectPackageError(() => parseManifest({ ...manifest, tokenizer: '../secret.json' }), /tokenizer "\.\.\/secret\.json" must be a relative path/);
    expectPackageError(() => parseManifest({ ...manifest, tokenizer: '/etc/passwd' }), /must be a relative path/);
    expectPackageError(() => parseManifest({ ...manifest, files: manifest.files.filter((f: { path: string }) => f.path !== 'head.onnx') }), /graphs\.head\.fp32\.path refers to "head\.onnx", which is not listed/);
  });
});

describe('package files', () => {
  it('reads and verifies every needed file, and the tables', async () => {
    const { manifest, files } = syntheticPackage();
    const io = ioFor(files, manifest);
    const parsed = await readManifest(io);
    const progress: number[] = [];
    const read = await readVerified(io, parsed, neededFiles(parsed, false), (p) => progress.push(p.loaded));
    expect(read.size).toBe(10);
    expect(progress.at(-1)).toBe(parsed.files.reduce((n, f) => n + f.bytes, 0));
    const tables = readTables(parsed, read);
    const bytes = files.get('tables.bin')!;
    expect(tables.get('codebook')![1]).toBe(new DataView(bytes.buffer).getFloat32(4, true));
    expect(tables.get('levels')!.length).toBe(16);
  });

  it('rejects a file whose sha256 differs, naming it', async () => {
    const { manifest, files } = syntheticPackage();
    const corrupt = Uint8Array.from(files.get('head.onnx')!);
    corrupt[0] ^= 1;
    files.set('head.onnx', corrupt);
    const io = ioFor(files, manifest);
    const parsed = await readManifest(io);
    await expect(readVerified(io, parsed, neededFiles(parsed, false))).rejects.toThrow(/^head\.onnx: sha256 is [0-9a-f]{64} but the manifest says/);
  });

  it('rejects a truncated file, naming it', async () => {
    const { manifest, files } = syntheticPackage();
    files.set('tables.bin', files.get('tables.bin')!.subarray(0, 10));
    const io = ioFor(files, manifest);
    const parsed = await readManifest(io);
    const failure = readVerified(io, parsed, neededFiles(parsed, false));
    await expect(failure).rejects.toBeInstanceOf(BadPackageError);
    await expect(failure).rejects.toThrow(/^tables\.bin: is 10 bytes but the manifest says \d+ \(the file is truncated\)/);
  });

  it('reports a missing file and a manifest that is not JSON', async () => {
    const { manifest, files } = syntheticPackage();
    files.delete('decoder.onnx');
    const io = ioFor(files, manifest);
    const parsed = await readManifest(io);
    await expect(readVerified(io, parsed, neededFiles(parsed, false))).rejects.toThrow(/^decoder\.onnx: is missing from test package/);
    const broken = createFileMapIO(new Map([['manifest.json', new Blob(['{nope'])]]));
    await expect(readManifest(broken)).rejects.toThrow(/^manifest\.json: is not valid JSON/);
  });

  it('heals a corrupt cached copy by evicting it and reading again', async () => {
    const { manifest, files } = syntheticPackage();
    const parsed = parseManifest(manifest);
    let reads = 0;
    const evicted: string[] = [];
    const io = {
      location: 'flaky cache',
      async read(path: string) {
        reads++;
        const bytes = Uint8Array.from(files.get(path)!);
        if (path === 'head.onnx' && evicted.length === 0) bytes[0] ^= 1;
        return bytes;
      },
      async evict(path: string) {
        evicted.push(path);
      },
    };
    const read = await readVerified(io, parsed, ['head.onnx']);
    expect(evicted).toEqual(['head.onnx']);
    expect(reads).toBe(2);
    expect(read.get('head.onnx')).toEqual(files.get('head.onnx'));
  });
});
