// Runs the engine in the page (onnxruntime-web/webgpu build) on the golden fixture and reports
// parity numbers, cancellation and determinism to run.mjs. Not a vitest file: run.mjs bundles it.
import * as ort from 'onnxruntime-web/webgpu';
import type { Ort } from '../../../src/engine/backend';
import { loadEngine } from '../../../src/engine/index';
import type { TraceEntry } from '../../../src/engine/pipeline';

type Views = typeof Float64Array | typeof Float32Array | typeof Int32Array | typeof Uint8Array;

async function goldenCases() {
  const golden = await (await fetch('/fixture/golden.json')).json();
  const cases = [];
  for (const c of golden.cases) {
    const buffer = await (await fetch(`/fixture/${c.bin}`)).arrayBuffer();
    const array = (name: string, View: Views) => {
      const e = c.arrays[name];
      return new View(buffer, e.offset, e.shape.reduce((a: number, b: number) => a * b, 1));
    };
    const list = (prefix: string, View: Views) =>
      Object.keys(c.arrays).filter((k) => k.startsWith(`${prefix}.`)).map((k) => array(k, View));
    const scales = list('tokenUniforms', Float64Array).length;
    cases.push({
      c,
      draws: {
        tokenUniforms: list('tokenUniforms', Float64Array) as Float64Array[],
        gumbelUniforms: c.settings.smooth ? (list('gumbelUniforms', Float64Array) as Float64Array[]) : undefined,
        diffusionNoise: c.settings.residual ? (list('diffusionNoise', Float32Array) as Float32Array[]) : undefined,
      },
      pixels: array('pixels', Uint8Array) as Uint8Array,
      tokens: Array.from({ length: scales }, (_, k) => array(`scales.${k}.tokens`, Int32Array) as Int32Array),
      logits: Array.from({ length: scales }, (_, k) => array(`scales.${k}.logits`, Float32Array) as Float32Array),
    });
  }
  return cases;
}

async function check(backend: 'webgpu' | 'wasm') {
  ort.env.wasm.wasmPaths = '/ort/';
  const engine = await loadEngine('/fixture/', { ort: ort as unknown as Ort, backend });
  const results = [];
  for (const g of await goldenCases()) {
    const trace: TraceEntry[] = [];
    const started = performance.now();
    const result = await engine.generate(
      { prompt: g.c.prompt, seed: 0, settings: g.c.settings },
      { draws: g.draws, trace: (e) => trace.push({ ...e, data: e.data.slice() } as TraceEntry) },
    );
    const at = (kind: string, k: number) => trace.find((e) => e.kind === kind && 'scale' in e && e.scale === k)!.data;
    let maxPixelDiff = 0;
    g.pixels.forEach((v, i) => (maxPixelDiff = Math.max(maxPixelDiff, Math.abs(v - result.image.data[i]))));
    const tokensSame = g.tokens.every((ref, k) => ref.every((v, i) => v === at('tokens', k)[i]));
    const logitsError = Math.max(
      ...g.logits.map((ref, k) => {
        let diff = 0;
        let scale = 0;
        ref.forEach((v, i) => {
          diff = Math.max(diff, Math.abs(v - at('logits', k)[i]));
          scale = Math.max(scale, Math.abs(v));
        });
        return diff / scale;
      }),
    );
    results.push({ name: g.c.name, maxPixelDiff, tokensSame, logitsError, ms: Math.round(performance.now() - started) });
  }
  const controller = new AbortController();
  const cancelled = await engine
    .generate({ prompt: 'a red circle', seed: 1 }, { signal: controller.signal, onEvent: (e) => e.type === 'scale' && e.index === 1 && controller.abort() })
    .then(
      () => 'finished',
      (e) => e.code,
    );
  const a = await engine.generate({ prompt: 'a red circle', seed: 1 });
  const b = await engine.generate({ prompt: 'a red circle', seed: 1 });
  const deterministic = a.image.data.every((v, i) => v === b.image.data[i]);
  const info = engine.info;
  await engine.dispose();
  return { backend: info.backend, results, cancelled, deterministic };
}

(window as unknown as { runCheck: typeof check }).runCheck = check;
