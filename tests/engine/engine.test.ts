// The engine as the worker and the CLI use it: events, determinism, cancellation, bad input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../src/engine/index';
import { createFsIO } from '../../src/engine/node';
import type { TraceEntry } from '../../src/engine/pipeline';
import type { GenerateEvent, SamplingSettings } from '../../src/engine/types';
import { FIXTURE, importOrt } from './golden';

type Loaded = Awaited<ReturnType<typeof loadEngine>>;
const PROMPT = 'a red circle on a blue background';

describe('engine on the tiny package (onnxruntime-node)', () => {
  let engine: Loaded;

  beforeAll(async () => {
    const ort = await importOrt('onnxruntime-node');
    const phases: string[] = [];
    engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE), onProgress: (p) => phases.push(p.phase) });
    expect(new Set(phases)).toEqual(new Set(['manifest', 'download', 'upload']));
  });
  afterAll(() => engine?.dispose());

  it('describes the model and its backend', () => {
    expect(engine.info.backend).toMatchObject({ backend: 'cpu', fp16: false });
    expect(engine.info.scales).toEqual(engine.model.manifest.model.patchNums);
    expect(engine.info.vocabulary).toContain('circle');
    expect(engine.info.vocabulary).not.toContain('[UNK]');
  });

  it('streams start, a preview per scale, diffusion steps and decode, then returns pixels and timings', async () => {
    const events: GenerateEvent[] = [];
    const result = await engine.generate({ prompt: PROMPT, seed: 3 }, { onEvent: (e) => events.push(e) });
    const K = engine.info.scales.length;
    const side = engine.info.scales[K - 1];
    expect(events[0]).toMatchObject({ type: 'start', scales: K, width: engine.info.imageSize });
    const scales = events.filter((e) => e.type === 'scale');
    expect(scales.map((e) => e.index)).toEqual([...Array(K).keys()]);
    for (const e of scales) expect(e.type === 'scale' && e.preview && [e.preview.width, e.preview.height, e.preview.data.length]).toEqual([side, side, side * side * 4]);
    expect(events.filter((e) => e.type === 'diffusion').map((e) => e.type === 'diffusion' && e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(events.at(-1)?.type).toBe('decode');
    expect(result.image.width).toBe(engine.info.imageSize);
    expect(result.image.data.length).toBe(engine.info.imageSize ** 2 * 4);
    expect(result).toMatchObject({ prompt: PROMPT, seed: 3, model: engine.info.name, backend: 'cpu', warnings: [] });
    for (const stage of ['textEncoder', 'transformer', 'head', 'scaleUpdate', 'preview', 'diffusion', 'decoder'] as const) {
      expect(result.timings[stage], stage).toBeGreaterThan(0);
    }
    expect(result.timings.total).toBeGreaterThanOrEqual(result.timings.transformer + result.timings.diffusion);
  });

  it('is deterministic: same prompt, seed and settings give the same bytes; another seed does not', async () => {
    const a = await engine.generate({ prompt: PROMPT, seed: 11 });
    const b = await engine.generate({ prompt: PROMPT, seed: 11, previews: false });
    const c = await engine.generate({ prompt: PROMPT, seed: 12 });
    expect(Buffer.from(b.image.data).equals(Buffer.from(a.image.data))).toBe(true);
    expect(Buffer.from(c.image.data).equals(Buffer.from(a.image.data))).toBe(false);
    const smooth = await engine.generate({ prompt: PROMPT, seed: 11, settings: { smooth: true, topK: 8, topP: 0.8 } });
    const again = await engine.generate({ prompt: PROMPT, seed: 11, settings: { smooth: true, topK: 8, topP: 0.8 } });
    expect(Buffer.from(again.image.data).equals(Buffer.from(smooth.image.data))).toBe(true);
    expect(smooth.settings).toMatchObject({ smooth: true, topK: 8, topP: 0.8 });
  });

  it('applies a top-k schedule scale by scale', async () => {
    // Top-k off on scales 0–1, top-3 from scale 2 on: every token of scales 2 and 3 is among the 3
    // largest guided logits of its position; on scales 0–1 tokens outside them are drawn too.
    const V = engine.model.manifest.model.vocabSize;
    const outsideTop3: number[] = [0, 0, 0, 0];
    for (const seed of [1, 2, 3, 4]) {
      const logits: Float32Array[] = [];
      const tokens: Int32Array[] = [];
      const trace = (e: TraceEntry) => {
        if (e.kind === 'logits') logits[e.scale] = e.data.slice();
        if (e.kind === 'tokens') tokens[e.scale] = e.data.slice();
      };
      const result = await engine.generate({ prompt: PROMPT, seed, settings: { topK: { values: [0, 3], from: [0, 2] } } }, { trace });
      expect(result.settings.topK).toEqual({ values: [0, 3], from: [0, 2] });
      tokens.forEach((row, k) =>
        row.forEach((token, p) => {
          const position = Array.from(logits[k].subarray(p * V, (p + 1) * V));
          const third = [...position].sort((a, b) => b - a)[2];
          if (position[token] < third) outsideTop3[k]++;
        }),
      );
    }
    expect(outsideTop3[0] + outsideTop3[1]).toBeGreaterThan(0);
    expect(outsideTop3.slice(2)).toEqual([0, 0]);
  });

  it('discrete-only mode skips the diffusion head and changes the image', async () => {
    const events: GenerateEvent[] = [];
    const discrete = await engine.generate({ prompt: PROMPT, seed: 11, settings: { residual: false } }, { onEvent: (e) => events.push(e) });
    const full = await engine.generate({ prompt: PROMPT, seed: 11 });
    expect(events.some((e) => e.type === 'diffusion')).toBe(false);
    expect(discrete.timings.diffusion).toBe(0);
    expect(Buffer.from(discrete.image.data).equals(Buffer.from(full.image.data))).toBe(false);
  });

  it('cancels mid-run within one step and stays ready for the next request', async () => {
    const reference = await engine.generate({ prompt: PROMPT, seed: 5 });
    for (const stopAt of ['scale', 'diffusion'] as const) {
      const controller = new AbortController();
      const seen: GenerateEvent[] = [];
      const run = engine.generate(
        { prompt: PROMPT, seed: 5 },
        {
          signal: controller.signal,
          onEvent: (e) => {
            seen.push(e);
            if (e.type === stopAt && !controller.signal.aborted) controller.abort();
          },
        },
      );
      await expect(run).rejects.toMatchObject({ code: 'cancelled' });
      // Nothing ran after the abort: at most the event that triggered it, then silence.
      const index = seen.findIndex((e) => e.type === stopAt);
      expect(seen.length).toBe(index + 1);
    }
    const after = await engine.generate({ prompt: PROMPT, seed: 5 });
    expect(Buffer.from(after.image.data).equals(Buffer.from(reference.image.data))).toBe(true);
  });

  it('refuses to start when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(engine.generate({ prompt: PROMPT, seed: 1 }, { signal: controller.signal })).rejects.toMatchObject({ code: 'cancelled' });
  });

  it('rejects an empty prompt and bad settings as bad input', async () => {
    await expect(engine.generate({ prompt: '   ', seed: 1 })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/prompt is empty/) });
    await expect(engine.generate({ prompt: PROMPT, seed: -1 })).rejects.toMatchObject({ code: 'bad-input' });
    await expect(engine.generate({ prompt: PROMPT, seed: 1, settings: { topP: 2 } })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/topP/) });
    await expect(engine.generate({ prompt: PROMPT, seed: 1, settings: { temperature: 0 } })).rejects.toMatchObject({ code: 'bad-input' });
    await expect(engine.generate({ prompt: PROMPT, seed: 1, settings: { guidedScales: 1.5 } })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/guidedScales/) });
  });

  it('reads unknown words as the unknown token and lists them', async () => {
    expect(engine.analyzePrompt('a zebra on a blue background')).toMatchObject({ unknown: ['zebra'], truncated: false });
    const result = await engine.generate({ prompt: 'a zebra on a blue background', seed: 1 });
    expect(result.warnings.join(' ')).toMatch(/zebra/);
    expect(result.image.data.length).toBeGreaterThan(0);
  });

  it('cuts a prompt longer than the text window with a warning, never a crash', async () => {
    const long = `${PROMPT} `.repeat(30);
    expect(engine.analyzePrompt(long).truncated).toBe(true);
    const result = await engine.generate({ prompt: long, seed: 1 });
    expect(result.warnings.join(' ')).toMatch(/the model reads the first \d+/);
  });
});

type Feeds = Record<string, { dims: readonly number[] }>;

/** onnxruntime-node whose session runs show their feeds and outputs to the test first. */
async function watchedOrt(onFeeds?: (feeds: Feeds) => void, onOutputs?: (outputs: Record<string, unknown>) => void) {
  const ort = await importOrt('onnxruntime-node');
  const InferenceSession = {
    create: async (...args: unknown[]) => {
      const session = await (ort.InferenceSession.create as (...a: unknown[]) => Promise<any>)(...args);
      return {
        inputNames: session.inputNames,
        outputNames: session.outputNames,
        inputMetadata: session.inputMetadata,
        release: () => session.release(),
        run: async (feeds: Feeds, ...rest: unknown[]) => {
          onFeeds?.(feeds);
          const outputs = await session.run(feeds, ...rest);
          onOutputs?.(outputs);
          return outputs;
        },
      };
    },
  };
  return { ...ort, InferenceSession } as unknown as typeof ort;
}

describe('conditional rows alone where guidance is 0', () => {
  let engine: Loaded;
  /** The rows of x of every transformer step since the last reset. */
  let stepRows: number[] = [];

  beforeAll(async () => {
    const ort = await watchedOrt((feeds) => {
      if (feeds.rope_cos) stepRows.push(feeds.x.dims[0]);
    });
    engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE) });
  });
  afterAll(() => engine?.dispose());

  /** Tokens per scale and the image of one run; `bothRows` forces the CFG pair on every step. */
  async function tokensAndImage(settings: Partial<SamplingSettings>, seed: number, bothRows: boolean) {
    stepRows = [];
    const tokens: Int32Array[] = [];
    const trace = (entry: TraceEntry) => {
      if (entry.kind === 'tokens') tokens[entry.scale] = entry.data;
    };
    const result = await engine.generate({ prompt: PROMPT, seed, settings }, { trace, bothRows });
    return { tokens, pixels: result.image.data, rows: stepRows };
  }

  function maxPixelDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
    let max = 0;
    for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
    return max;
  }

  // The tiny package has 4 scales: guidedScales 1 or cfg 0 leave every scale unguided (the text
  // step on one row too), 2 and 3 the last scales and the diffusion head, 0 none (scale 0 is
  // unguided by the ramp, yet the scales after it are guided: both rows throughout).
  const cases: [string, Partial<SamplingSettings>, number[]][] = [
    ['guidedScales 2', { guidedScales: 2 }, [2, 2, 1, 1]],
    ['guidedScales 3, top-k and top-p', { guidedScales: 3, topK: 16, topP: 0.9 }, [2, 2, 2, 1]],
    ['guidedScales 1', { guidedScales: 1 }, [1, 1, 1, 1]],
    ['cfg 0', { cfg: 0, guidedScales: 0 }, [1, 1, 1, 1]],
    ['every scale guided', { guidedScales: 0 }, [2, 2, 2, 2]],
    ['guidedScales 2 with smoothing, no residual', { guidedScales: 2, smooth: true, residual: false }, [2, 2, 1, 1]],
  ];
  for (const [name, settings, rows] of cases) {
    it(`${name}: steps on rows ${rows.join(', ')}, the same tokens as both rows, the image within 1/255`, async () => {
      for (const seed of [1, 7]) {
        const pair = await tokensAndImage(settings, seed, true);
        const alone = await tokensAndImage(settings, seed, false);
        expect(pair.rows).toEqual([2, 2, 2, 2]);
        expect(alone.rows).toEqual(rows);
        expect(alone.tokens).toEqual(pair.tokens);
        expect(maxPixelDifference(alone.pixels, pair.pixels)).toBeLessThanOrEqual(1);
      }
    });
  }
});

describe('tensor lifetimes', () => {
  /** An ORT whose sessions remember every tensor they return. */
  async function trackingOrt() {
    const returned: { name: string; tensor: { location: string } }[] = [];
    const ort = await watchedOrt(undefined, (outputs) => {
      for (const [name, tensor] of Object.entries(outputs)) returned.push({ name, tensor: tensor as { location: string } });
    });
    return { ort, returned };
  }

  it('frees every tensor the graphs returned, after a run and after a cancelled run', async () => {
    const { ort, returned } = await trackingOrt();
    const engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE) });
    try {
      await engine.generate({ prompt: PROMPT, seed: 1 });
      // Conditional rows alone from scale 2 on, and from the text step on (cfg 0).
      await engine.generate({ prompt: PROMPT, seed: 1, settings: { guidedScales: 2 } });
      await engine.generate({ prompt: PROMPT, seed: 1, settings: { cfg: 0 } });
      // A negative prompt, a detail prompt's second cache, a vary's prefix (smoothing needs its
      // logits), and the same after the switch to the conditional rows alone.
      const edited = { prompt: PROMPT, negativePrompt: 'a green square', detailPrompt: 'a blue circle', detailFrom: 3 };
      const source = await engine.generate({ ...edited, seed: 1 });
      await engine.generate({ ...edited, seed: 2, vary: { fromScale: 4, tokens: source.tokens } });
      await engine.generate({ ...edited, seed: 2, settings: { smooth: true, guidedScales: 2 }, vary: { fromScale: 4, tokens: source.tokens } });
      const detailCancel = new AbortController();
      const cancelledAtSwitch = engine.generate(
        { ...edited, seed: 3 },
        { signal: detailCancel.signal, onEvent: (e) => e.type === 'scale' && e.index === 1 && detailCancel.abort() },
      );
      await expect(cancelledAtSwitch).rejects.toMatchObject({ code: 'cancelled' });
      const controller = new AbortController();
      const cancelled = engine.generate(
        { prompt: PROMPT, seed: 1 },
        { signal: controller.signal, onEvent: (e) => e.type === 'scale' && e.index === 1 && controller.abort() },
      );
      await expect(cancelled).rejects.toMatchObject({ code: 'cancelled' });
      expect(returned.length).toBeGreaterThan(20);
      expect(returned.some((r) => r.name.startsWith('present_key_'))).toBe(true);
      const alive = returned.filter((r) => r.tensor.location !== 'none').map((r) => r.name);
      expect(alive).toEqual([]);
    } finally {
      await engine.dispose();
    }
  });
});

/** The graph a session run belongs to, told by its feeds. */
function graphOf(feeds: Feeds): string {
  if ('input_ids' in feeds) return 'textEncoder';
  if ('context' in feeds) return 'condition';
  if ('rope_cos' in feeds) return 'transformer';
  if ('head_cond' in feeds) return 'head';
  if ('phi_weight' in feeds) return 'scaleUpdate';
  if ('t' in feeds) return 'diffusionHead';
  return 'other';
}

function meanPixelDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>) => Buffer.from(a as Uint8ClampedArray).equals(Buffer.from(b as Uint8ClampedArray));

describe('negative prompt, detail prompt and vary', () => {
  let engine: Loaded;
  /** Session runs per graph since the last reset, with the batch of each text-encoder run. */
  let runs: Record<string, number> = {};
  let textBatches: number[] = [];
  let contexts: Float32Array[] = [];

  beforeAll(async () => {
    const ort = await watchedOrt((feeds) => {
      const graph = graphOf(feeds);
      runs[graph] = (runs[graph] ?? 0) + 1;
      if (graph === 'textEncoder') textBatches.push(feeds.input_ids.dims[0]);
      if (graph === 'condition') contexts.push(Float32Array.from((feeds.context as unknown as { data: Float32Array }).data));
    });
    engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE) });
  });
  afterAll(() => engine?.dispose());

  function reset() {
    runs = {};
    textBatches = [];
    contexts = [];
  }

  const K = () => engine.info.scales.length;

  it('results carry every scale’s token map and the seed that drew it', async () => {
    const result = await engine.generate({ prompt: PROMPT, seed: 4 });
    expect(result.tokens.maps.map((m) => m.length)).toEqual(engine.info.scales.map((s) => s * s));
    expect(result.tokens.seeds).toEqual(engine.info.scales.map(() => 4));
    expect(result.timings).toMatchObject({ prefix: 0, reusedScales: 0 });
  });

  it('a negative prompt fills the unconditional rows, changes the image and is deterministic', async () => {
    reset();
    const plain = await engine.generate({ prompt: PROMPT, seed: 6 });
    const plainContext = contexts[0];
    reset();
    const a = await engine.generate({ prompt: PROMPT, seed: 6, negativePrompt: 'a green square' });
    expect(textBatches).toEqual([2]);
    const half = contexts[0].length / 2;
    // Conditional rows as before; the unconditional ones are text features, not zeros.
    expect(contexts[0].subarray(0, half)).toEqual(plainContext.subarray(0, half));
    expect(plainContext.subarray(half).every((v) => v === 0)).toBe(true);
    expect(contexts[0].subarray(half).some((v) => v !== 0)).toBe(true);
    const b = await engine.generate({ prompt: PROMPT, seed: 6, negativePrompt: 'a green square' });
    expect(same(a.image.data, b.image.data)).toBe(true);
    expect(same(a.image.data, plain.image.data)).toBe(false);
    expect(a.negativePrompt).toBe('a green square');
    // Without guidance the unconditional rows are not run at all: the negative prompt does nothing.
    const unguided = await engine.generate({ prompt: PROMPT, seed: 6, settings: { cfg: 0 } });
    const unguidedNegative = await engine.generate({ prompt: PROMPT, seed: 6, settings: { cfg: 0 }, negativePrompt: 'a green square' });
    expect(same(unguided.image.data, unguidedNegative.image.data)).toBe(true);
    // An empty negative prompt is HART's empty condition.
    expect(same((await engine.generate({ prompt: PROMPT, seed: 6, negativePrompt: '  ' })).image.data, plain.image.data)).toBe(true);
  });

  it('a detail prompt keeps the scales before its switch, rebuilds the cache under its text, changes the image and is deterministic', async () => {
    const detailPrompt = 'a yellow triangle on a red background';
    const plain: Int32Array[] = (await engine.generate({ prompt: PROMPT, seed: 8 })).tokens.maps;
    reset();
    const a = await engine.generate({ prompt: PROMPT, seed: 8, detailPrompt, detailFrom: 3 });
    // One text-encoder run for both prompts; a second condition and a second step over the text
    // and scale 2 (1-based) when the detail prompt takes over at scale 3.
    expect(textBatches).toEqual([2]);
    expect(runs.condition).toBe(2);
    expect(runs.transformer).toBe(K() + 2);
    expect(runs.head).toBe(K());
    expect(a.timings.prefix).toBeGreaterThan(0);
    expect(a.tokens.maps.slice(0, 2)).toEqual(plain.slice(0, 2));
    expect(a.tokens.maps.slice(2)).not.toEqual(plain.slice(2));
    const b = await engine.generate({ prompt: PROMPT, seed: 8, detailPrompt, detailFrom: 3 });
    expect(same(a.image.data, b.image.data)).toBe(true);
    expect(a).toMatchObject({ detailPrompt, detailFrom: 3 });
    // From scale 1 the detail prompt conditions everything: the tokens of a run on it alone.
    const first = await engine.generate({ prompt: PROMPT, seed: 8, detailPrompt, detailFrom: 1 });
    const alone = await engine.generate({ prompt: detailPrompt, seed: 8 });
    expect(first.tokens.maps).toEqual(alone.tokens.maps);
  });

  it('refuses a detail prompt without its scale, a scale without a prompt, and a scale outside 1…K', async () => {
    const request = { prompt: PROMPT, seed: 1 };
    await expect(engine.generate({ ...request, detailFrom: 2 })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/detailFrom = 2 needs a detail prompt/) });
    await expect(engine.generate({ ...request, detailPrompt: 'a square' })).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/needs detailFrom/) });
    for (const detailFrom of [0, K() + 1, 1.5]) {
      await expect(engine.generate({ ...request, detailPrompt: 'a square', detailFrom })).rejects.toMatchObject({
        code: 'bad-input',
        message: `detailFrom = ${detailFrom} is invalid: it must be a whole number from 1 to ${K()} (scales count from 1).`,
      });
    }
    const long = `${PROMPT} `.repeat(30);
    const cut = await engine.generate({ ...request, negativePrompt: long, detailPrompt: long, detailFrom: 2 });
    expect(cut.warnings.join(' ')).toMatch(/The negative prompt has \d+ tokens; the model reads the first/);
    expect(cut.warnings.join(' ')).toMatch(/The detail prompt has \d+ tokens/);
  });

  it('vary keeps the scales before k bit for bit, steps over them without sampling, and re-samples the rest', async () => {
    const source = await engine.generate({ prompt: PROMPT, seed: 3 });
    for (let k = 1; k <= K(); k++) {
      reset();
      const varied = await engine.generate({ prompt: PROMPT, seed: 21, vary: { fromScale: k, tokens: source.tokens } });
      expect(varied.tokens.maps.slice(0, k - 1)).toEqual(source.tokens.maps.slice(0, k - 1));
      expect(varied.tokens.seeds).toEqual(engine.info.scales.map((_, j) => (j < k - 1 ? 3 : 21)));
      expect(varied.timings.reusedScales).toBe(k - 1);
      expect(varied.variedFrom).toBe(k);
      expect(same(varied.image.data, source.image.data)).toBe(false);
      // Every step runs once (the kept ones in the prefix), the head only where tokens are drawn.
      expect(runs).toMatchObject({ textEncoder: 1, condition: 1, transformer: K(), head: K() - (k - 1), scaleUpdate: K() - 1 });
      if (k > 1) expect(varied.timings.prefix).toBeGreaterThan(0);
    }
    // With the source's seed the rebuilt prefix gives back the source image exactly.
    const again = await engine.generate({ prompt: PROMPT, seed: 3, vary: { fromScale: 3, tokens: source.tokens } });
    expect(same(again.image.data, source.image.data)).toBe(true);
  });

  it('vary replays negative, detail and smoothing exactly, and a varied image can be varied again', async () => {
    const request = { prompt: PROMPT, negativePrompt: 'a green square', detailPrompt: 'a blue circle', detailFrom: 3, settings: { smooth: true, topK: 8 } };
    const source = await engine.generate({ ...request, seed: 5 });
    for (const fromScale of [2, 4]) {
      const again = await engine.generate({ ...request, seed: 5, vary: { fromScale, tokens: source.tokens } });
      expect(same(again.image.data, source.image.data)).toBe(true);
    }
    const varied = await engine.generate({ ...request, seed: 6, vary: { fromScale: 2, tokens: source.tokens } });
    const twice = await engine.generate({ ...request, seed: 6, vary: { fromScale: 4, tokens: varied.tokens } });
    expect(twice.tokens.seeds).toEqual([5, 6, 6, 6]);
    const replay = await engine.generate({ ...request, seed: 6, vary: { fromScale: 4, tokens: twice.tokens } });
    expect(same(replay.image.data, twice.image.data)).toBe(true);
  });

  it('a later first re-sampled scale stays closer to the source image', async () => {
    const early: number[] = [];
    const late: number[] = [];
    for (const seed of [1, 2, 3]) {
      const source = await engine.generate({ prompt: PROMPT, seed, settings: { residual: false } });
      for (const vary of [100, 200]) {
        const at = async (fromScale: number) =>
          (await engine.generate({ prompt: PROMPT, seed: seed + vary, settings: { residual: false }, vary: { fromScale, tokens: source.tokens } })).image.data;
        early.push(meanPixelDifference(await at(2), source.image.data));
        late.push(meanPixelDifference(await at(K()), source.image.data));
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(late)).toBeLessThan(mean(early));
  });

  it('refuses kept tokens that are not this model’s', async () => {
    const source = await engine.generate({ prompt: PROMPT, seed: 2 });
    const vary = (fromScale: number, maps = source.tokens.maps) => engine.generate({ prompt: PROMPT, seed: 1, vary: { fromScale, tokens: { maps, seeds: source.tokens.seeds } } });
    await expect(vary(K() + 1)).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/vary.fromScale = 5 is invalid/) });
    await expect(vary(3, [source.tokens.maps[0], new Int32Array(3)])).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/maps\[1\]/) });
    const V = engine.model.manifest.model.vocabSize;
    await expect(vary(2, [new Int32Array([V])])).rejects.toMatchObject({ code: 'bad-input' });
  });
});
