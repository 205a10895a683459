// The model list as data: the shipped catalog agrees with the packages it lists, a malformed one
// is refused naming the field, and a model's needs are checked before anything is fetched.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BadInputError } from '../../src/engine/errors';
import { describeNeeds, parseCatalog, type CatalogEntry } from '../../src/engine/catalog';
import { parseManifest } from '../../src/engine/manifest';
import { neededFiles } from '../../src/engine/modelPackage';
import { checkNeedsFit } from '../../src/engine/preflight';
import { checkNeeds } from '../../src/engine/load';
import type { AdapterLike, Ort } from '../../src/engine/backend';
import { importOrt } from './golden';

const BASE = 'http://127.0.0.1:5173/models/catalog.json';
const shipped = () => JSON.parse(readFileSync('public/models/catalog.json', 'utf8'));
const GiB = 1024 ** 3;

describe('the shipped catalog', () => {
  const entries = parseCatalog(shipped(), BASE);

  it('lists the bundled shapes model with the sizes of its package', () => {
    const shapes = entries.find((e) => e.source.kind === 'package')!;
    expect(shapes.source).toEqual({ kind: 'package', url: 'http://127.0.0.1:5173/models/hart-shapes/' });
    const manifest = parseManifest(JSON.parse(readFileSync('public/models/hart-shapes/manifest.json', 'utf8')));
    const bytes = neededFiles(manifest, false).reduce((n, p) => n + manifest.files.find((f) => f.path === p)!.bytes, 0);
    // The fp32 variant, which WASM and most first visits use, is what a person downloads.
    expect(shapes.downloadBytes).toBe(bytes);
    expect(shapes.imageSize).toBe(manifest.model.imageSize);
  });

  it('lists the published 0.7B as an import from the hub', () => {
    const hart = entries.find((e) => e.id === 'hart-0.7b-1024px')!;
    expect(hart.name).toBe('HART 0.7B · 1024 px');
    expect(hart.source.kind).toBe('import');
    if (hart.source.kind !== 'import') return;
    expect(hart.source.hart).toBe('https://huggingface.co/mit-han-lab/hart-0.7b-1024px');
    expect(hart.source.skeleton).toBe('http://127.0.0.1:5173/skeletons/hart-0.7b-1024px/');
    expect(describeNeeds(hart.needs)).toBe('WebGPU with shader-f16, a GPU buffer of 640.0 MB');
  });
});

describe('a malformed catalog', () => {
  const withModel = (patch: Record<string, unknown>) => {
    const catalog = shipped();
    catalog.models[0] = { ...catalog.models[0], ...patch };
    return catalog;
  };
  const refused = (value: unknown) => {
    try {
      parseCatalog(value, BASE);
    } catch (error) {
      expect(error).toBeInstanceOf(BadInputError);
      return (error as Error).message;
    }
    throw new Error('accepted');
  };

  it('is refused naming the field at fault', () => {
    expect(refused({ format: 'other', version: 1, models: [] })).toMatch(/format must be "hart-web-catalog" version 1/);
    expect(refused(withModel({ downloadBytes: -1 }))).toMatch(/models\[0\]\.downloadBytes must be a whole number/);
    expect(refused(withModel({ name: '' }))).toMatch(/models\[0\]\.name must be a non-empty string/);
    expect(refused(withModel({ source: { kind: 'torrent' } }))).toMatch(/models\[0\]\.source\.kind must be "package" or "import"/);
    expect(refused(withModel({ source: { kind: 'package', url: 'javascript:alert(1)' } }))).toMatch(/must be an http\(s\) address/);
    expect(refused(withModel({ needs: { webgpu: 'yes', shaderF16: false, gpuBufferBytes: 0 } }))).toMatch(/needs\.webgpu must be true or false/);
    const twice = shipped();
    twice.models[1].id = twice.models[0].id;
    expect(refused(twice)).toMatch(/id "hart-shapes-128" appears twice/);
  });
});

describe('checkNeedsFit', () => {
  const hart = parseCatalog(shipped(), BASE).find((e) => e.id === 'hart-0.7b-1024px') as CatalogEntry;
  const limits = { maxBufferSize: 2 * GiB, maxStorageBufferBindingSize: 2 * GiB };

  it('passes a WebGPU device with shader-f16, room and large buffers', () => {
    const fit = checkNeedsFit(hart.needs, hart.diskBytes, { backend: 'webgpu', shaderF16: true, gpuLimits: limits, storage: { quota: 100 * GiB, usage: 0 } });
    expect(fit).toMatchObject({ ok: true, problems: [] });
  });

  it('says in words why a device cannot run it, before any download', () => {
    expect(checkNeedsFit(hart.needs, hart.diskBytes, { backend: 'wasm' }).problems).toEqual([
      'The model needs WebGPU; this browser runs it on WASM, which cannot hold it.',
      "The model's graphs compute in float16, which needs WebGPU with shader-f16; the wasm backend cannot run them.",
    ]);
    const small = checkNeedsFit(hart.needs, hart.diskBytes, {
      backend: 'webgpu',
      shaderF16: false,
      gpuLimits: { maxBufferSize: 256 * 1024 ** 2, maxStorageBufferBindingSize: 128 * 1024 ** 2 },
      storage: { quota: 4 * GiB, usage: 1 * GiB },
    });
    expect(small.ok).toBe(false);
    expect(small.problems.join('\n')).toMatch(/needs 5\.45 GB of browser storage but only 3\.00 GB is free/);
    expect(small.problems.join('\n')).toMatch(/adapter with shader-f16; this adapter does not have it/);
    expect(small.problems.join('\n')).toMatch(/GPU buffer of 640\.0 MB \(its largest GPU buffer\) but this GPU allows at most 256\.0 MB/);
    expect(small.problems.join('\n')).toMatch(/binds 640\.0 MB at once .* at most 128\.0 MB per binding/);
  });
});

describe('checkNeeds', () => {
  const hart = parseCatalog(shipped(), BASE).find((e) => e.id === 'hart-0.7b-1024px') as CatalogEntry;
  const adapter = (f16: boolean): AdapterLike & { limits: { maxBufferSize: number; maxStorageBufferBindingSize: number } } => ({
    features: new Set(f16 ? ['shader-f16'] : []),
    info: { vendor: 'test', architecture: 'gpu', isFallbackAdapter: false },
    limits: { maxBufferSize: 2 * GiB, maxStorageBufferBindingSize: 1 * GiB },
  });

  it('asks the adapter and the storage of this machine', async () => {
    const ort = (await importOrt('onnxruntime-web')) as Ort;
    const storage = { estimate: async () => ({ quota: 100 * GiB, usage: 0 }) };
    const good = await checkNeeds(hart.needs, hart.diskBytes, { ort, gpu: { requestAdapter: async () => adapter(true) }, storage });
    expect(good).toMatchObject({ ok: true, backend: { backend: 'webgpu' } });
    const noF16 = await checkNeeds(hart.needs, hart.diskBytes, { ort, gpu: { requestAdapter: async () => adapter(false) }, storage });
    expect(noF16.problems).toEqual(["The model's graphs compute in float16, which needs a WebGPU adapter with shader-f16; this adapter does not have it."]);
    const none = await checkNeeds(hart.needs, hart.diskBytes, { ort, gpu: null, storage });
    expect(none).toMatchObject({ ok: false, backend: { backend: 'wasm' } });
  });
});
