// The KV cache's element type follows the step graph: fp16 graphs exported with float16 cache
// I/O get float16 empty pasts and hand float16 presents back as the next pasts. Runs a package
// exported here (tools/py export, fused attention) on onnxruntime-node and on
// onnxruntime-web's wasm backend in Node.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ort } from '../../src/engine/backend';
import { BadPackageError } from '../../src/engine/errors';
import { KvCache, kvCacheDtype, pastKey, pastValue } from '../../src/engine/kvCache';
import { RunQueue } from '../../src/engine/queue';
import { createGraphSession, readFloats, type GraphSession } from '../../src/engine/session';
import { transformerStep } from '../../src/engine/transformer';
import type { BackendName } from '../../src/engine/types';
import { importOrt, relativeError } from './golden';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(tmpdir(), 'hart-kv-'));
const pkg = path.join(work, 'package');

beforeAll(() => {
  execFileSync(path.join(root, 'tools/py'), ['export', '--config', 'tiny', '--random', '--seed', '3', '--out', pkg, '--attention', 'fused'], { stdio: 'pipe' });
}, 300_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Model {
  depth: number;
  heads: number;
  width: number;
}

function manifest(): { model: Model; graphs: Record<string, Record<string, { path: string; externalData?: string[] }>> } {
  return JSON.parse(readFileSync(path.join(pkg, 'manifest.json'), 'utf8'));
}

async function openGraph(ort: Ort, backend: BackendName, variant: 'fp32' | 'fp16'): Promise<GraphSession> {
  const entry = manifest().graphs.transformer[variant];
  const read = (file: string) => new Uint8Array(readFileSync(path.join(pkg, file)));
  return createGraphSession({ ort, backend, queue: new RunQueue() }, 'transformer', {
    path: entry.path,
    bytes: read(entry.path),
    externalData: (entry.externalData ?? []).map((file) => ({ path: file, data: read(file) })),
  });
}

/** Deterministic values in [-1, 1). */
function values(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

/** Two steps (3 new tokens on an empty cache, then 4 more); the hidden states and the cache. */
async function twoSteps(ort: Ort, session: GraphSession, model: Model) {
  const rows = 2;
  const headDim = model.width / model.heads;
  const cache = new KvCache(ort, model.depth, rows, model.heads, headDim, kvCacheDtype(session));
  const hidden: Float32Array[] = [];
  for (const [step, length] of [3, 4].entries()) {
    const x = new ort.Tensor('float32', values(rows * length * model.width, 10 + step), [rows, length, model.width]);
    const rope = { rows, length, headDim, cos: values(rows * length * headDim, 20 + step), sin: values(rows * length * headDim, 30 + step) };
    hidden.push((await readFloats(await transformerStep(ort, session, cache, x, rope, true))).slice());
  }
  return { hidden, cache };
}

for (const runtime of ['onnxruntime-node', 'onnxruntime-web'] as const) {
  describe(`KV cache dtype on ${runtime}`, () => {
    let ort: Ort;
    const backend: BackendName = runtime === 'onnxruntime-node' ? 'cpu' : 'wasm';
    beforeAll(async () => {
      ort = await importOrt(runtime);
    });

    it('feeds float16 pasts to the fp16 graph and float32 pasts to the fp32 graph, with the same results', async () => {
      const model = manifest().model;
      const fp32 = await openGraph(ort, backend, 'fp32');
      const fp16 = await openGraph(ort, backend, 'fp16');
      try {
        expect(kvCacheDtype(fp32)).toBe('float32');
        expect(kvCacheDtype(fp16)).toBe('float16');
        const want = await twoSteps(ort, fp32, model);
        const got = await twoSteps(ort, fp16, model);
        for (const [i, { cache, dtype }] of [{ cache: want.cache, dtype: 'float32' }, { cache: got.cache, dtype: 'float16' }].entries()) {
          expect(cache.length, `cache ${i}`).toBe(7);
          const feeds = cache.feeds();
          for (let b = 0; b < model.depth; b++) {
            for (const name of [pastKey(b), pastValue(b)]) {
              expect(feeds[name].type, name).toBe(dtype);
              expect(feeds[name].dims, name).toEqual([2, model.heads, 7, model.width / model.heads]);
            }
          }
        }
        for (let step = 0; step < 2; step++) {
          expect(relativeError(got.hidden[step], want.hidden[step]), `step ${step}`).toBeLessThan(2e-2);
        }
        want.cache.dispose();
        got.cache.dispose();
      } finally {
        await fp32.release();
        await fp16.release();
      }
    });
  });
}

describe('kvCacheDtype', () => {
  it('reads float32 when the runtime reports no input types, and rejects other types', () => {
    expect(kvCacheDtype({ inputType: () => undefined })).toBe('float32');
    expect(() => kvCacheDtype({ inputType: () => 'int32' }, 'transformer.fp16.onnx')).toThrow(BadPackageError);
    expect(() => kvCacheDtype({ inputType: () => 'int32' }, 'transformer.fp16.onnx')).toThrow(/past_key_0 is int32/);
  });
});
