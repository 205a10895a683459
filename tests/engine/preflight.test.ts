// The preflight check: download size, storage quota, GPU limits and shader-f16, from the manifest
// alone; and loadEngine refusing early, before any weight is downloaded.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AdapterLike, Ort } from '../../src/engine/backend';
import { checkPackage, loadEngine } from '../../src/engine/index';
import type { PackageIO } from '../../src/engine/readers';
import { createFsIO } from '../../src/engine/node';
import { neededFiles } from '../../src/engine/modelPackage';
import { parseManifest, type Manifest } from '../../src/engine/manifest';
import { checkModelFits, type PreflightEnv } from '../../src/engine/preflight';
import { FIXTURE, importOrt } from './golden';
import { syntheticPackage } from './manifestFixture';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const hex = (c: string) => c.repeat(64);

/**
 * A manifest shaped like the full model: a 1 GB int4 text encoder, an fp32 transformer with a
 * 900 MB shard and 100 MiB shards, and an fp16 transformer half that size.
 */
function bigManifest(): Manifest {
  const { manifest } = syntheticPackage();
  const add = (path: string, bytes: number, dtype: string) => manifest.files.push({ path, bytes, sha256: hex('a'), dtype });
  manifest.files = manifest.files.filter((f: { path: string }) => f.path !== 'textEncoder.onnx' && f.path !== 'transformer.onnx');
  add('textEncoder.onnx', 1000 * MiB, 'int4');
  add('transformer.onnx', 1 * MiB, 'float32');
  add('transformer.onnx.data', 900 * MiB, 'float32');
  add('transformer.onnx.data1', 100 * MiB, 'float32');
  add('transformer.fp16.onnx', 1 * MiB, 'float16');
  add('transformer.fp16.onnx.data', 450 * MiB, 'float16');
  manifest.graphs.transformer = {
    fp32: { path: 'transformer.onnx', externalData: ['transformer.onnx.data', 'transformer.onnx.data1'] },
    fp16: { path: 'transformer.fp16.onnx', externalData: ['transformer.fp16.onnx.data'] },
  };
  return parseManifest(manifest);
}

const sizeOf = (m: Manifest, paths: string[]) => paths.reduce((n, p) => n + m.files.find((f) => f.path === p)!.bytes, 0);
/** The `requirements` the manifest reader makes of this JSON (in a small valid package). */
function readRequirements(json: { requirements?: unknown }): Manifest['requirements'] {
  const { manifest } = syntheticPackage();
  return parseManifest({ ...manifest, ...json }).requirements;
}

const others = (m: Manifest) => m.files.filter((f) => !f.path.startsWith('transformer')).reduce((n, f) => n + f.bytes, 0);
const roomyGpu = { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 4 * GiB };

describe('checkModelFits', () => {
  const m = bigManifest();
  const fp32 = others(m) + sizeOf(m, ['transformer.onnx', 'transformer.onnx.data', 'transformer.onnx.data1']);
  const fp16 = others(m) + sizeOf(m, ['transformer.fp16.onnx', 'transformer.fp16.onnx.data']);

  it('counts only the files of the chosen variant, less what is cached', () => {
    const a = checkModelFits(m, { backend: 'webgpu', fp16: false, shaderF16: false, gpuLimits: roomyGpu });
    expect(a).toMatchObject({ ok: true, problems: [], downloadBytes: fp32, totalBytes: fp32 });
    const b = checkModelFits(m, { backend: 'webgpu', fp16: true, shaderF16: true, gpuLimits: roomyGpu });
    expect(b.downloadBytes).toBe(fp16);
    const resumed = checkModelFits(m, { backend: 'webgpu', fp16: true, shaderF16: true, cached: new Set(['textEncoder.onnx', 'transformer.fp16.onnx.data']) });
    expect(resumed.downloadBytes).toBe(fp16 - 1450 * MiB);
    expect(resumed.totalBytes).toBe(fp16);
  });

  it('compares the download with the free storage quota', () => {
    const env: PreflightEnv = { backend: 'webgpu', fp16: true, shaderF16: true, gpuLimits: roomyGpu };
    expect(checkModelFits(m, { ...env, storage: { quota: 10 * GiB, usage: 1 * GiB } }).ok).toBe(true);
    const full = checkModelFits(m, { ...env, storage: { quota: 2 * GiB, usage: 1 * GiB } });
    expect(full.ok).toBe(false);
    expect(full.problems).toHaveLength(1);
    expect(full.problems[0]).toMatch(/needs 1\.4\d GB of browser storage but only 1\.00 GB is free/);
    // Already cached: nothing left to download, so a full quota does not matter.
    const cached = new Set(m.files.map((f) => f.path));
    expect(checkModelFits(m, { ...env, storage: { quota: 2 * GiB, usage: 2 * GiB }, cached }).ok).toBe(true);
    // onnxruntime-node reads from disk: no browser storage involved.
    expect(checkModelFits(m, { backend: 'cpu', fp16: false, storage: { quota: 0, usage: 0 } }).ok).toBe(true);
  });

  it('names the GPU limit the largest weight file exceeds', () => {
    const small = { maxBufferSize: 1 * GiB, maxStorageBufferBindingSize: 256 * MiB };
    const r = checkModelFits(m, { backend: 'webgpu', fp16: false, shaderF16: false, gpuLimits: small });
    expect(r.ok).toBe(false);
    // The 1000 MiB text encoder is the largest file (under the 1 GiB buffer limit, over the binding limit).
    expect(r.problems).toEqual([expect.stringMatching(/binds 1000\.0 MB at once \(its largest weight file, textEncoder\.onnx\).*256\.0 MB per binding \(maxStorageBufferBindingSize\)/)]);
    const tiny = { maxBufferSize: 128 * MiB, maxStorageBufferBindingSize: 128 * MiB };
    expect(checkModelFits(m, { backend: 'webgpu', fp16: false, gpuLimits: tiny }).problems.join(' ')).toMatch(/maxBufferSize/);
    // The limits only concern WebGPU.
    expect(checkModelFits(m, { backend: 'wasm', fp16: false, gpuLimits: tiny }).ok).toBe(true);
  });

  it('uses the buffer sizes the package declares over file sizes', () => {
    const requirements = readRequirements({ requirements: { fp16: { maxBufferBytes: 3 * GiB, maxBindingBytes: 3 * GiB }, fp32: { maxBufferBytes: 100 } } })!;
    const limits = { maxBufferSize: 2 * GiB, maxStorageBufferBindingSize: 2 * GiB };
    const f16 = checkModelFits({ ...m, requirements }, { backend: 'webgpu', fp16: true, shaderF16: true, gpuLimits: limits });
    expect(f16.problems).toHaveLength(2);
    expect(f16.problems[0]).toMatch(/GPU buffer of 3\.00 GB \(its largest GPU buffer, as the package declares\) but this GPU allows at most 2\.00 GB \(maxBufferSize\)/);
    // fp32 declares 100 bytes, although its largest file is 1000 MiB.
    expect(checkModelFits({ ...m, requirements }, { backend: 'webgpu', fp16: false, gpuLimits: { maxBufferSize: 200, maxStorageBufferBindingSize: 200 } }).ok).toBe(true);
  });

  it('needs shader-f16 when the graphs are stored in float16 only', () => {
    const { manifest } = syntheticPackage();
    manifest.files.find((f: { path: string }) => f.path === 'decoder.onnx').dtype = 'float16';
    const f16Only = parseManifest(manifest);
    expect(checkModelFits(f16Only, { backend: 'webgpu', fp16: false, shaderF16: true }).ok).toBe(true);
    expect(checkModelFits(f16Only, { backend: 'webgpu', fp16: false, shaderF16: false }).problems).toEqual([expect.stringMatching(/shader-f16; this adapter does not have it/)]);
    expect(checkModelFits(f16Only, { backend: 'wasm', fp16: false }).problems).toEqual([expect.stringMatching(/the wasm backend cannot run them/)]);
    const declared = readRequirements({ requirements: { shaderF16: true } });
    expect(checkModelFits({ ...m, requirements: declared }, { backend: 'webgpu', fp16: false, shaderF16: false }).ok).toBe(false);
  });

  it('refuses files over the 2 GB ArrayBuffer cap and weights over the 4 GiB WASM heap', () => {
    const { manifest } = syntheticPackage();
    manifest.files.find((f: { path: string }) => f.path === 'decoder.onnx').bytes = 3 * GiB;
    manifest.files.find((f: { path: string }) => f.path === 'head.onnx').bytes = 1.5 * GiB;
    const huge = parseManifest(manifest);
    const wasm = checkModelFits(huge, { backend: 'wasm', fp16: false });
    expect(wasm.problems).toEqual([expect.stringMatching(/^decoder\.onnx is 3\.00 GB, over the browser's/), expect.stringMatching(/weights take 4\.50 GB, more than the 4\.00 GB WASM memory/)]);
    expect(checkModelFits(huge, { backend: 'cpu', fp16: false }).ok).toBe(true);
  });

  it('reads the manifest\'s optional requirements field and rejects a malformed one', () => {
    expect(readRequirements({})).toBeUndefined();
    expect(readRequirements({ requirements: { fp32: { maxBufferBytes: 5 } } })).toEqual({ fp32: { maxBufferBytes: 5 }, fp16: undefined, shaderF16: undefined });
    expect(() => readRequirements({ requirements: { fp32: { maxBufferBytes: -1 } } })).toThrow(/requirements\.fp32\.maxBufferBytes must be a whole number/);
    expect(() => readRequirements({ requirements: [] })).toThrow(/requirements must be an object/);
  });
});

describe('loadEngine preflight', () => {
  const adapter = (limits: { maxBufferSize: number; maxStorageBufferBindingSize: number }): AdapterLike & { limits: typeof limits } => ({
    features: new Set<string>(),
    info: { vendor: 'test', architecture: 'gpu', isFallbackAdapter: false },
    limits,
  });

  /** The fixture through an IO that records reads, so a test can see nothing was downloaded. */
  function recordingIO(): { io: PackageIO; reads: string[] } {
    const fs = createFsIO(FIXTURE);
    const reads: string[] = [];
    return { reads, io: { location: fs.location, read: (path, options) => (reads.push(path), fs.read(path, options)) } };
  }

  it('fails with no-backend, naming the limit, before downloading any weight', async () => {
    const ort = await importOrt('onnxruntime-web');
    const { io, reads } = recordingIO();
    const gpu = { requestAdapter: async () => adapter({ maxBufferSize: 64 * 1024, maxStorageBufferBindingSize: 64 * 1024 }) };
    await expect(loadEngine(FIXTURE, { ort, io, gpu, backend: 'webgpu', storage: null })).rejects.toMatchObject({
      code: 'no-backend',
      message: expect.stringMatching(/^hart-tiny cannot run here \(webgpu\): The model needs a GPU buffer of 128\.0 KB \(its largest GPU buffer, as the package declares\).*64\.0 KB \(maxBufferSize\)/),
    });
    expect(reads).toEqual(['manifest.json']);
  });

  it('fails when the browser storage cannot hold the download', async () => {
    const ort = await importOrt('onnxruntime-web');
    const { io, reads } = recordingIO();
    const storage = { estimate: async () => ({ quota: 1000, usage: 900 }) };
    await expect(loadEngine(FIXTURE, { ort, io, gpu: null, backend: 'wasm', storage })).rejects.toMatchObject({
      code: 'no-backend',
      message: expect.stringMatching(/browser storage but only 100 B is free/),
    });
    expect(reads).toEqual(['manifest.json']);
  });

  it('checkPackage answers from the manifest alone', async () => {
    const ort = await importOrt('onnxruntime-web');
    const { io, reads } = recordingIO();
    const storage = { estimate: async () => ({ quota: 10 * GiB, usage: 0 }) };
    const gpu = { requestAdapter: async () => adapter(roomyGpu) };
    const check = await checkPackage(FIXTURE, { ort: ort as Ort, io, gpu, storage });
    const manifest = parseManifest(JSON.parse(readFileSync(`${FIXTURE}/manifest.json`, 'utf8')));
    expect(check).toMatchObject({ ok: true, problems: [], name: 'hart-tiny', backend: { backend: 'webgpu', fp16: false } });
    // Every file a load reads; not the optional encoder, fetched when a run starts from an image.
    const needed = neededFiles(manifest, false);
    expect(needed).not.toContain('encoder.onnx');
    expect(check.downloadBytes).toBe(manifest.files.filter((f) => needed.includes(f.path)).reduce((n, f) => n + f.bytes, 0));
    expect(reads).toEqual(['manifest.json']);
  });
});
