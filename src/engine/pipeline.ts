// HART's sampling loop (docs/model-package.md §4), and nothing else: each stage lives in its own
// file; this one passes values between them, emits events, times the stages, honours the
// AbortSignal between every run, and frees what it allocated however it ends.
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { decodeImage } from './decoder';
import { sampleResidual } from './diffusionHead';
import { BadInputError, throwIfCancelled } from './errors';
import { KvCache, kvCacheDtype } from './kvCache';
import type { GraphName, Manifest } from './manifest';
import { previewImage } from './preview';
import { addLastScale, updateScale, type ScaleTables } from './quantizer';
import { Rng, Stream } from './rng';
import { leadingRopeRows, scaleRope, textRope } from './rope';
import { lookupCodebook, sampleScale, smoothVectors } from './sampling';
import { firstUnguidedScale, guidanceWeight, smoothingRatio, smoothingTau, type DiffusionConstants } from './schedule';
import { disposeAll, leadingRows, readFloats, repeatRows, type GraphSession } from './session';
import { checkSeed, resolveSettings, topKAt } from './samplingSettings';
import { encodeContext, tokenizePrompt, type PromptTokenizer } from './textEncoder';
import { guidedLogits, transformerStep } from './transformer';
import type { BackendInfo, GenerateEvent, GenerateOptions, GenerateRequest, GenerateResult, InjectedDraws, SamplingSettings, StageTimings } from './types';

/** Everything a loaded package provides to the loop. */
export interface LoadedModel {
  ort: Ort;
  manifest: Manifest;
  backend: BackendInfo;
  sessions: Record<GraphName, GraphSession>;
  tokenizer: PromptTokenizer;
  scaleTables: ScaleTables;
  codebook: Float32Array;
  diffusion: DiffusionConstants;
  /** Set when the WebGPU device was lost: the sessions are unusable from then on. */
  deviceLost?: string;
  /**
   * Release the text encoder's session after each encoding (its weights leave the GPU before the
   * transformer's KV cache grows) and create it again on the next request.
   */
  freeTextEncoderAfterUse?: boolean;
}

/** What a parity test or a debugger can watch, scale by scale. */
export type TraceEntry =
  | { kind: 'context'; data: Float32Array }
  | { kind: 'logits'; scale: number; data: Float32Array }
  | { kind: 'tokens'; scale: number; data: Int32Array }
  | { kind: 'fHat'; scale: number; data: Float32Array }
  | { kind: 'residual'; data: Float32Array };

export interface PipelineOptions extends GenerateOptions {
  trace?: (entry: TraceEntry) => void;
  /** Teacher forcing: use these token indices per scale instead of the sampled ones. */
  forcedTokens?: Int32Array[];
  /**
   * Run both CFG rows on every step, also where guidance is 0 (the path the conditional-only
   * steps replace; tests and measurements compare the two).
   */
  bothRows?: boolean;
}

const now = () => performance.now();

/** One image per request: the CFG batch is N = 2 rows (1 on the conditional-only steps). */
const IMAGES = 1;

function emptyTimings(): StageTimings {
  return { textEncoder: 0, transformer: 0, head: 0, sampling: 0, scaleUpdate: 0, preview: 0, diffusion: 0, decoder: 0, total: 0 };
}

/** Draws come from the request (parity tests) when given, else from the seeded RNG. */
class Draws {
  constructor(
    private readonly rng: Rng,
    private readonly injected: InjectedDraws | undefined,
  ) {}

  private check<T extends { length: number }>(array: T | undefined, what: string, length: number): T | undefined {
    if (array && array.length !== length) {
      throw new BadInputError(`Injected ${what} has ${array.length} values, expected ${length}.`);
    }
    return array;
  }

  token(k: number, count: number): ArrayLike<number> {
    return this.check(this.injected?.tokenUniforms?.[k], `tokenUniforms[${k}]`, count) ?? this.rng.uniforms(Stream.Token, k, count);
  }

  gumbel(k: number, count: number): ArrayLike<number> {
    return this.check(this.injected?.gumbelUniforms?.[k], `gumbelUniforms[${k}]`, count) ?? this.rng.uniforms(Stream.Gumbel, k, count);
  }

  noise(step: number, count: number): Float32Array {
    return this.check(this.injected?.diffusionNoise?.[step], `diffusionNoise[${step}]`, count) ?? this.rng.normals(Stream.Diffusion, step, count);
  }
}

/** The guided logits of the last text position of every image: the 1×1 scale's logits. */
function lastTextLogits(logits: Float32Array, images: number, window: number, vocab: number): Float32Array {
  const out = new Float32Array(images * vocab);
  for (let b = 0; b < images; b++) out.set(logits.subarray((b * window + window - 1) * vocab, (b * window + window) * vocab), b * vocab);
  return out;
}

/** The per-request state of one generation: what it owns, how it times and reports. */
class Run {
  readonly timings = emptyTimings();
  readonly started = now();
  private readonly live = new Set<Tensor>();

  constructor(
    readonly model: LoadedModel,
    readonly options: PipelineOptions,
  ) {}

  get signal(): AbortSignal | undefined {
    return this.options.signal;
  }

  emit(event: GenerateEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // A failing listener must not break the generation.
    }
  }

  elapsed(): number {
    return now() - this.started;
  }

  async time<T>(stage: keyof StageTimings, work: () => Promise<T> | T): Promise<T> {
    const t = now();
    try {
      return await work();
    } finally {
      this.timings[stage] += now() - t;
    }
  }

  /** Tensors the run holds until it ends (GPU buffers on WebGPU). */
  own(tensor: Tensor): Tensor {
    this.live.add(tensor);
    return tensor;
  }

  free(tensor: Tensor): void {
    this.live.delete(tensor);
    disposeAll([tensor]);
  }

  freeAll(): void {
    disposeAll(this.live);
    this.live.clear();
  }
}

interface Prepared {
  settings: SamplingSettings;
  promptIds: number[];
  warnings: string[];
}

/** Checks the request before anything runs: settings, seed and prompt. */
function prepare(model: LoadedModel, request: GenerateRequest): Prepared {
  const settings = resolveSettings(model.manifest.sampling, request.settings);
  checkSeed(request.seed);
  const prompt = tokenizePrompt(model.tokenizer, request.prompt);
  return { settings, promptIds: prompt.ids, warnings: [...prompt.warnings] };
}

/**
 * The guided logits of a step. A conditional-only step (guidance 0, `hidden` holds the
 * conditional rows alone) gives the head, which takes both CFG halves, its rows twice and
 * `headCond` paired the same way: `(1 + 0)·cond − 0·cond` is `cond` exactly.
 */
async function stepLogits(run: Run, hidden: Tensor, headCond: Tensor, guidance: number, conditionalOnly: boolean): Promise<Float32Array> {
  const { ort, sessions } = run.model;
  return run.time('head', async () => {
    if (!conditionalOnly) return (await guidedLogits(ort, sessions.head, hidden, headCond, guidance, run.signal)).data;
    if (guidance !== 0) throw new Error(`A conditional-only step has guidance ${guidance}.`);
    const paired = await repeatRows(ort, hidden, IMAGES, 2);
    try {
      return (await guidedLogits(ort, sessions.head, paired, headCond, 0, run.signal)).data;
    } finally {
      disposeAll([paired]);
    }
  });
}

/** The head's condition with its conditional rows twice, for the conditional-only steps. */
async function pairedHeadCond(run: Run, headCond: Tensor): Promise<Tensor> {
  const paired = run.own(await repeatRows(run.model.ort, headCond, IMAGES, 2));
  run.free(headCond);
  return paired;
}

/**
 * Text → context → condition → transformer step 0 over the text window. Returns the 1×1 scale's
 * guided logits (from the last text position) and the head's AdaLN condition (paired for the
 * head when `conditionalOnly`: no scale is guided, so there are no unconditional rows at all).
 */
async function textStep(
  run: Run,
  cache: KvCache,
  promptIds: number[],
  settings: SamplingSettings,
  conditionalOnly: boolean,
): Promise<{ logits: Float32Array; headCond: Tensor }> {
  const { ort, manifest, sessions } = run.model;
  const { width, heads, ropeTheta, vocabSize, patchNums } = manifest.model;
  const window = manifest.textEncoder.contextTokens;
  const context = run.own(
    await run.time('textEncoder', () => encodeContext(ort, sessions.textEncoder, manifest.textEncoder, promptIds, IMAGES, run.signal, !conditionalOnly)),
  );
  if (run.model.freeTextEncoderAfterUse) await run.time('textEncoder', () => sessions.textEncoder.suspend());
  if (run.options.trace) run.options.trace({ kind: 'context', data: await readFloats(context) });
  const conditioned = await run.time('textEncoder', () => sessions.condition.run({ context }, ['x', 'head_cond'], run.signal));
  run.free(context);
  const x = run.own(conditioned.x);
  let headCond = run.own(conditioned.head_cond);
  if (conditionalOnly) headCond = await run.time('head', () => pairedHeadCond(run, headCond));

  const allRows = textRope(IMAGES, window, promptIds.length, width / heads, ropeTheta);
  const rope = conditionalOnly ? leadingRopeRows(allRows, IMAGES) : allRows;
  const hidden = run.own(await run.time('transformer', () => transformerStep(ort, sessions.transformer, cache, x, rope, true, run.signal)));
  run.free(x);
  const guidance = guidanceWeight(settings.cfg, 0, patchNums.length, settings.guidedScales);
  const logits = await stepLogits(run, hidden, headCond, guidance, conditionalOnly);
  run.free(hidden);
  return { logits: lastTextLogits(logits, IMAGES, window, vocabSize), headCond };
}

/**
 * Samples scale k from its logits: token indices (or the forced ones), their codebook vectors,
 * and the vectors f_hat receives (the Gumbel-smoothed ones when smoothing is on).
 */
async function sampleTokens(run: Run, draws: Draws, settings: SamplingSettings, k: number, logits: Float32Array): Promise<{ hard: Float32Array; vectors: Float32Array }> {
  const { manifest, codebook } = run.model;
  const { patchNums, vocabSize: vocab, latentChannels: cv } = manifest.model;
  const K = patchNums.length;
  const positions = IMAGES * patchNums[k] ** 2;
  const filter = { topK: topKAt(settings.topK, k), topP: settings.topP, temperature: settings.temperature };
  const trace = run.options.trace;

  trace?.({ kind: 'logits', scale: k, data: logits });
  const sampled = await run.time('sampling', () => sampleScale(logits, positions, vocab, filter, draws.token(k, positions), settings.smooth));
  const indices = run.options.forcedTokens?.[k] ?? sampled.indices;
  if (indices.length !== positions) throw new BadInputError(`Forced tokens of scale ${k} have ${indices.length} values, expected ${positions}.`);
  trace?.({ kind: 'tokens', scale: k, data: indices });
  const hard = lookupCodebook(codebook, cv, indices);
  if (!settings.smooth) return { hard, vectors: hard };
  const vectors = await run.time('sampling', () => {
    const ratio = smoothingRatio(Math.min(k, K - 2), K);
    return smoothVectors(sampled.kept!, positions, vocab, ratio, smoothingTau(ratio), draws.gumbel(k, positions * vocab), codebook, cv);
  });
  return { hard, vectors };
}

/** Emits the scale's event, with a preview of f_hat unless previews are off. */
async function reportScale(run: Run, k: number, fHat: Float32Array, previews: boolean): Promise<void> {
  const { ort, sessions, manifest } = run.model;
  const { patchNums, latentChannels: cv } = manifest.model;
  const side = patchNums[patchNums.length - 1];
  const preview = previews ? await run.time('preview', () => previewImage(ort, sessions.preview, fHat, cv, side, run.signal)) : undefined;
  run.emit({ type: 'scale', index: k, count: patchNums.length, preview, elapsedMs: run.elapsed() });
}

/**
 * Scale k < K−1 → k+1: f_hat += φ(Up(vectors)), the next input, transformer step k+1 and its
 * guided logits. The last scale's hidden states are returned (the diffusion head needs them).
 * `conditionalOnly`: step k+1 runs on the conditional rows alone (`headCond` paired, see
 * stepLogits); the cache keeps only those rows from then on.
 */
async function nextScale(
  run: Run,
  cache: KvCache,
  headCond: Tensor,
  k: number,
  fHat: Float32Array,
  vectors: Float32Array,
  request: { settings: SamplingSettings; promptTokens: number; previews: boolean },
  conditionalOnly: boolean,
): Promise<{ fHat: Float32Array; logits: Float32Array; hidden?: Tensor }> {
  const { ort, sessions, manifest, scaleTables } = run.model;
  const { patchNums, width, heads, ropeTheta } = manifest.model;
  const K = patchNums.length;
  const update = await run.time('scaleUpdate', () => updateScale(ort, sessions.scaleUpdate, manifest.model, scaleTables, k, fHat, vectors, IMAGES, run.signal));
  const xBoth = run.own(update.xNext);
  run.options.trace?.({ kind: 'fHat', scale: k, data: update.fHat });
  await reportScale(run, k, update.fHat, request.previews);

  const toLast = k + 1 === K - 1;
  const ropeBoth = scaleRope(IMAGES, patchNums[k + 1], patchNums[K - 1], request.promptTokens, width / heads, ropeTheta);
  // scaleUpdate writes both halves of x (the same rows twice): a view of the first is enough.
  const x = conditionalOnly ? leadingRows(ort, xBoth, IMAGES) : xBoth;
  const rope = conditionalOnly ? leadingRopeRows(ropeBoth, IMAGES) : ropeBoth;
  if (conditionalOnly) cache.keepLeadingRows(IMAGES);
  // The last scale's keys and values are never read again: the cache is not extended then,
  // and the cache itself is freed as soon as the last step has read it, so the diffusion head
  // and the decoder run without it.
  const hidden = run.own(await run.time('transformer', () => transformerStep(ort, sessions.transformer, cache, x, rope, !toLast, run.signal)));
  run.free(xBoth);
  if (toLast) cache.dispose();
  const guidance = guidanceWeight(request.settings.cfg, k + 1, K, request.settings.guidedScales);
  const logits = await stepLogits(run, hidden, headCond, guidance, conditionalOnly);
  if (toLast) return { fHat: update.fHat, logits, hidden };
  run.free(hidden);
  return { fHat: update.fHat, logits };
}

/** The last scale: f_hat += vectors (+ the diffusion residual, conditioned on the hard vectors). */
async function lastScale(
  run: Run,
  draws: Draws,
  settings: SamplingSettings,
  fHat: Float32Array,
  sampled: { hard: Float32Array; vectors: Float32Array },
  hidden: Tensor,
  previews: boolean,
): Promise<Float32Array> {
  const { ort, sessions, manifest, diffusion } = run.model;
  const { patchNums, latentChannels: cv } = manifest.model;
  const K = patchNums.length;
  const side = patchNums[K - 1];
  const discrete = addLastScale(fHat, sampled.vectors, IMAGES, cv, side);
  await reportScale(run, K - 1, discrete, previews);
  if (!settings.residual) {
    run.options.trace?.({ kind: 'fHat', scale: K - 1, data: discrete });
    return discrete;
  }
  const { steps, scale } = manifest.model.diffusion;
  const count = IMAGES * side * side * cv;
  const noise = Array.from({ length: steps }, (_, s) => draws.noise(s, count));
  // After conditional-only steps `hidden` holds the conditional rows alone: the graph adds it to
  // the tokens' embedding of both halves, so broadcasting gives both halves the conditional
  // rows, and with guidance 0 eps is the conditional half's.
  const inputs = { hidden, tokens: sampled.hard, images: IMAGES, positions: side * side, channels: cv, guidance: guidanceWeight(settings.cfg, K - 1, K, settings.guidedScales), scale, noise };
  const onStep = (step: number, total: number) => run.emit({ type: 'diffusion', step, steps: total, elapsedMs: run.elapsed() });
  const residual = await run.time('diffusion', () => sampleResidual(ort, sessions.diffusionHead, diffusion, inputs, onStep, run.signal));
  run.free(hidden);
  run.options.trace?.({ kind: 'residual', data: residual });
  // (vectors + residual) first, then f_hat + that: the reference's order of float32 additions.
  const continuous = new Float32Array(sampled.vectors.length);
  for (let j = 0; j < continuous.length; j++) continuous[j] = sampled.vectors[j] + residual[j];
  const result = addLastScale(fHat, continuous, IMAGES, cv, side);
  run.options.trace?.({ kind: 'fHat', scale: K - 1, data: result });
  return result;
}

export async function generate(model: LoadedModel, request: GenerateRequest, options: PipelineOptions = {}): Promise<GenerateResult> {
  const run = new Run(model, options);
  const { settings, promptIds, warnings } = prepare(model, request);
  throwIfCancelled(options.signal);

  const { patchNums, latentChannels: cv, width, heads, depth, imageSize } = model.manifest.model;
  const K = patchNums.length;
  const side = patchNums[K - 1];
  const previews = request.previews !== false;
  const draws = new Draws(new Rng(request.seed), options.draws);
  run.emit({ type: 'start', scales: K, width: imageSize, height: imageSize, warnings });

  // From this scale on guidance is 0 everywhere (the diffusion head included): the unconditional
  // rows influence nothing, so those steps run on the conditional rows alone.
  const conditionalFrom = options.bothRows ? K : firstUnguidedScale(settings.cfg, K, settings.guidedScales);
  const rows = conditionalFrom === 0 ? IMAGES : 2 * IMAGES;
  const cache = new KvCache(model.ort, depth, rows, heads, width / heads, kvCacheDtype(model.sessions.transformer));
  try {
    const text = await textStep(run, cache, promptIds, settings, conditionalFrom === 0);
    let { logits, headCond } = text;
    let hidden: Tensor | undefined;
    let fHat: Float32Array = new Float32Array(IMAGES * cv * side * side);
    for (let k = 0; k < K - 1; k++) {
      throwIfCancelled(options.signal);
      const { vectors } = await sampleTokens(run, draws, settings, k, logits);
      const conditionalOnly = k + 1 >= conditionalFrom;
      if (k + 1 === conditionalFrom) headCond = await run.time('head', () => pairedHeadCond(run, headCond));
      ({ fHat, logits, hidden } = await nextScale(run, cache, headCond, k, fHat, vectors, { settings, promptTokens: promptIds.length, previews }, conditionalOnly));
    }
    throwIfCancelled(options.signal);
    const sampled = await sampleTokens(run, draws, settings, K - 1, logits);
    fHat = await lastScale(run, draws, settings, fHat, sampled, hidden!, previews);

    throwIfCancelled(options.signal);
    run.emit({ type: 'decode', elapsedMs: run.elapsed() });
    const [image] = await run.time('decoder', () => decodeImage(model.ort, model.sessions.decoder, fHat, IMAGES, cv, side, options.signal));
    run.timings.total = run.elapsed();
    return { image, prompt: request.prompt, seed: request.seed, settings, model: model.manifest.name, backend: model.backend.backend, timings: run.timings, warnings };
  } finally {
    cache.dispose();
    run.freeAll();
  }
}
