// Parity with the PyTorch reference (tools/hart/sampler.py) on the golden fixture, on
// onnxruntime-node and on onnxruntime-web's wasm backend in Node.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../src/engine/index';
import { createFsIO } from '../../src/engine/node';
import type { TraceEntry } from '../../src/engine/pipeline';
import { PromptTokenizer, textEncoderInputs } from '../../src/engine/textEncoder';
import { FIXTURE, importOrt, maxAbsDiff, readGolden, relativeError } from './golden';

const golden = readGolden();

type Loaded = Awaited<ReturnType<typeof loadEngine>>;

function collect() {
  const entries: TraceEntry[] = [];
  const copy = (e: TraceEntry): TraceEntry => ({ ...e, data: e.data.slice() }) as TraceEntry;
  return { entries, trace: (e: TraceEntry) => entries.push(copy(e)) };
}

const find = (entries: TraceEntry[], kind: TraceEntry['kind'], scale?: number) => {
  const entry = entries.find((e) => e.kind === kind && (scale === undefined || ('scale' in e && e.scale === scale)));
  if (!entry) throw new Error(`no ${kind} entry${scale === undefined ? '' : ` for scale ${scale}`}`);
  return entry.data;
};

for (const runtime of ['onnxruntime-node', 'onnxruntime-web'] as const) {
  describe(`parity with the PyTorch reference on ${runtime}`, () => {
    let engine: Loaded;

    beforeAll(async () => {
      const ort = await importOrt(runtime);
      engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE), backend: runtime === 'onnxruntime-node' ? 'cpu' : 'wasm' });
      expect(engine.info.name).toBe(golden.model);
    });
    afterAll(() => engine?.dispose());

    it('tokenizes the prompts to the same input ids', () => {
      const { manifest } = engine.model;
      for (const c of golden.cases) {
        const tokenizer = engine.model.tokenizer as PromptTokenizer;
        const tokenized = tokenizer.tokenize(c.prompt);
        expect(tokenized.truncated).toBe(c.truncated);
        expect(tokenized.ids.length).toBe(c.tokenCount);
        expect(Array.from(textEncoderInputs(manifest.textEncoder, tokenized.ids, 1).inputIds)).toEqual(c.inputIds);
      }
    });

    for (const c of golden.cases) {
      it(`case ${c.name}: teacher-forced logits at every scale within 1e-3 relative`, async () => {
        const K = engine.info.scales.length;
        const forcedTokens = Array.from({ length: K }, (_, k) => c.array(`scales.${k}.tokens`, 'int32'));
        const { entries, trace } = collect();
        await engine.generate({ prompt: c.prompt, seed: 0, settings: c.settings }, { draws: c.draws(K), forcedTokens, trace });
        const textHidden = c.array('textHidden', 'float32');
        expect(relativeError(find(entries, 'context').subarray(0, textHidden.length), textHidden)).toBeLessThan(1e-4);
        for (let k = 0; k < K; k++) {
          const error = relativeError(find(entries, 'logits', k), c.array(`scales.${k}.logits`, 'float32'));
          expect(error, `scale ${k}`).toBeLessThan(1e-3);
        }
      });

      it(`case ${c.name}: injected draws give the same tokens at every scale and the image within 1/255`, async () => {
        const K = engine.info.scales.length;
        const { entries, trace } = collect();
        const result = await engine.generate({ prompt: c.prompt, seed: 0, settings: c.settings }, { draws: c.draws(K), trace });
        for (let k = 0; k < K; k++) {
          expect(Array.from(find(entries, 'tokens', k)), `tokens of scale ${k}`).toEqual(Array.from(c.array(`scales.${k}.tokens`, 'int32')));
          expect(relativeError(find(entries, 'fHat', k), c.array(`scales.${k}.fHat`, 'float32')), `f_hat of scale ${k}`).toBeLessThan(1e-3);
        }
        if (c.settings.residual) expect(relativeError(find(entries, 'residual'), c.array('residual', 'float32'))).toBeLessThan(1e-3);
        const pixels = c.array('pixels', 'uint8');
        expect(result.image.data.length).toBe(pixels.length);
        expect(maxAbsDiff(result.image.data, pixels)).toBeLessThanOrEqual(1);
        expect(result.warnings.some((w) => /cut/.test(w))).toBe(c.truncated);
      });
    }
  });
}
