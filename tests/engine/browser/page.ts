// Runs the engine in the page (onnxruntime-web/webgpu build) on the golden fixture and reports
// parity numbers, cancellation and determinism to run.mjs. Not a vitest file: run.mjs bundles it.
import * as ort from 'onnxruntime-web/webgpu';
import type { Ort } from '../../../src/engine/backend';
import { loadEngine } from '../../../src/engine/index';
import type { TraceEntry } from '../../../src/engine/pipeline';
import { goldenCases, logitsError, maxPixelDiff, sameBytes, tokenMismatches } from './fixture';

async function check(backend: 'webgpu' | 'wasm') {
  ort.env.wasm.wasmPaths = '/ort/';
  const engine = await loadEngine('/fixture/', { ort: ort as unknown as Ort, backend });
  const results = [];
  for (const g of await goldenCases()) {
    const trace: TraceEntry[] = [];
    const started = performance.now();
    const result = await engine.generate(
      { prompt: g.prompt, seed: 0, settings: g.settings },
      { draws: g.draws, trace: (e) => trace.push({ ...e, data: e.data.slice() } as TraceEntry) },
    );
    const at = (kind: string, k: number) => trace.find((e) => e.kind === kind && 'scale' in e && e.scale === k)?.data ?? new Float32Array();
    results.push({
      name: g.name,
      maxPixelDiff: maxPixelDiff(g.pixels, result.image.data),
      tokensSame: tokenMismatches(g.tokens, g.tokens.map((_, k) => at('tokens', k))).length === 0,
      logitsError: logitsError(g.logits, (k) => at('logits', k) as Float32Array),
      ms: Math.round(performance.now() - started),
    });
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
  const deterministic = sameBytes(a.image.data, b.image.data);
  // Conditional rows alone (the cache narrowed to views of its GPU buffers, from scale 2 on and
  // from the text step on) against both rows on every step: the same tokens, pixels within 1/255.
  const conditional = [];
  for (const settings of [{ guidedScales: 2 }, { cfg: 0 }]) {
    const run = async (bothRows: boolean) => {
      const tokens: Int32Array[] = [];
      const trace = (e: TraceEntry) => e.kind === 'tokens' && (tokens[e.scale] = e.data.slice());
      return { tokens, image: (await engine.generate({ prompt: 'a red circle', seed: 2, settings }, { trace, bothRows })).image };
    };
    const pair = await run(true);
    const alone = await run(false);
    conditional.push({
      settings: JSON.stringify(settings),
      tokensSame: tokenMismatches(pair.tokens, alone.tokens).length === 0,
      maxPixelDiff: maxPixelDiff(pair.image.data, alone.image.data),
    });
  }
  const info = engine.info;
  await engine.dispose();
  return { backend: info.backend, results, cancelled, deterministic, conditional };
}

(window as unknown as { runCheck: typeof check }).runCheck = check;
