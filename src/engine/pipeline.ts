// HART's sampling loop (docs/model-package.md §4), and nothing else: each stage lives in its own
// file; this one passes values between them, emits events, times the stages, honours the
// AbortSignal between every run, and frees what it allocated however it ends.
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { decodeImage } from './decoder';
import { sampleResidual } from './diffusionHead';
import { BadInputError, throwIfCancelled } from './errors';
import { checkInitImage, encodeImage, imageToTensor, type EncodedImage } from './initImage';
import { KvCache, kvCacheDtype } from './kvCache';
import type { GraphName, Manifest } from './manifest';
import { previewImage } from './preview';
import { addLastScale, updateScale, type ScaleTables } from './quantizer';
import { Rng, Stream } from './rng';
import { leadingRopeRows, scaleRope, textRope, type RopeTables } from './rope';
import { lookupCodebook, sampleScale, smoothVectors } from './sampling';
import { firstUnguidedScale, guidanceWeight, smoothingRatio, smoothingTau, type DiffusionConstants } from './schedule';
import { disposeAll, leadingRows, readFloats, repeatRows, type GraphSession } from './session';
import { checkImageFromScale, checkScaleFrom, checkSeed, checkVary, resolveSettings, topKAt } from './samplingSettings';
import { contextTensor, encodeTexts, tokenizePrompt, type PromptTokenizer } from './textEncoder';
import { guidedLogits, transformerStep } from './transformer';
import type { BackendInfo, GenerateEvent, GenerateOptions, GenerateRequest, GenerateResult, InjectedDraws, SamplingSettings, StageTimings, VaryRequest } from './types';

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
  /**
   * The encoder graph's session, created on first use (absent when the package has no encoder):
   * only image to image needs it, so a text-only run neither downloads nor uploads it.
   */
  encoder?: () => Promise<GraphSession>;
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
  return { textEncoder: 0, transformer: 0, head: 0, sampling: 0, scaleUpdate: 0, preview: 0, diffusion: 0, decoder: 0, total: 0, prefix: 0, reusedScales: 0, encoder: 0 };
}

/**
 * Draws come from the request (parity tests) when given, else from the seeded RNG: a scale's
 * from the seed that sampled it (a vary keeps its source's scales and their seeds), the
 * diffusion's from the request's seed.
 */
class Draws {
  private readonly rngs = new Map<number, Rng>();

  constructor(
    private readonly seed: number,
    private readonly seedOf: (scale: number) => number,
    private readonly injected: InjectedDraws | undefined,
  ) {}

  private rng(seed: number): Rng {
    let rng = this.rngs.get(seed);
    if (!rng) this.rngs.set(seed, (rng = new Rng(seed)));
    return rng;
  }

  private check<T extends { length: number }>(array: T | undefined, what: string, length: number): T | undefined {
    if (array && array.length !== length) {
      throw new BadInputError(`Injected ${what} has ${array.length} values, expected ${length}.`);
    }
    return array;
  }

  token(k: number, count: number): ArrayLike<number> {
    return this.check(this.injected?.tokenUniforms?.[k], `tokenUniforms[${k}]`, count) ?? this.rng(this.seedOf(k)).uniforms(Stream.Token, k, count);
  }

  gumbel(k: number, count: number): ArrayLike<number> {
    return this.check(this.injected?.gumbelUniforms?.[k], `gumbelUniforms[${k}]`, count) ?? this.rng(this.seedOf(k)).uniforms(Stream.Gumbel, k, count);
  }

  noise(step: number, count: number): Float32Array {
    return this.check(this.injected?.diffusionNoise?.[step], `diffusionNoise[${step}]`, count) ?? this.rng(this.seed).normals(Stream.Diffusion, step, count);
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

/** A text that conditions the image rows: the main (structure) prompt or the detail prompt. */
interface Condition {
  ids: number[];
  /** Its T text features [T, D], once encoded. */
  features?: Float32Array;
}

interface Prepared {
  settings: SamplingSettings;
  structure: Condition;
  /** The detail prompt and its first scale (0-based), when given. */
  detail?: { condition: Condition; from: number };
  /** The negative prompt's condition for the unconditional rows; HART's zeros without one. */
  negative?: Condition;
  vary?: VaryRequest;
  /** Image to image: the image and its first sampled scale (1-based). */
  init?: { image: NonNullable<GenerateRequest['initImage']>; fromScale: number };
  warnings: string[];
}

/**
 * Checks the request before anything runs: settings, seed, prompts, the detail prompt's scale and
 * a vary's kept tokens. The negative and detail prompts follow the main prompt's rules (the same
 * tokenizer check, truncation and unknown-word warnings, naming which prompt).
 */
function prepare(model: LoadedModel, request: GenerateRequest): Prepared {
  const settings = resolveSettings(model.manifest.sampling, request.settings);
  checkSeed(request.seed);
  const { patchNums, vocabSize } = model.manifest.model;
  const prompt = tokenizePrompt(model.tokenizer, request.prompt);
  const warnings = [...prompt.warnings];
  const optional = (text: unknown, what: string): Condition | undefined => {
    if (text === undefined || text === null) return undefined;
    if (typeof text !== 'string') throw new BadInputError(`The ${what} must be text.`);
    if (text.trim() === '') return undefined;
    const tokenized = tokenizePrompt(model.tokenizer, text, what);
    warnings.push(...tokenized.warnings);
    return { ids: tokenized.ids };
  };
  const negative = optional(request.negativePrompt, 'negative prompt');
  const detailCondition = optional(request.detailPrompt, 'detail prompt');
  let detail: Prepared['detail'];
  if (request.detailFrom !== undefined) {
    checkScaleFrom('detailFrom', request.detailFrom, patchNums.length);
    if (!detailCondition) throw new BadInputError(`detailFrom = ${request.detailFrom} needs a detail prompt (detailPrompt is empty).`);
    detail = { condition: detailCondition, from: request.detailFrom - 1 };
  } else if (detailCondition) {
    throw new BadInputError(`A detail prompt needs detailFrom: the scale it conditions from (1 to ${patchNums.length}).`);
  }
  if (request.vary !== undefined) checkVary(request.vary, patchNums, vocabSize);
  let init: Prepared['init'];
  if (request.initImage !== undefined && request.initImage !== null) {
    if (request.vary !== undefined) throw new BadInputError('A request starts from an init image or varies an earlier image, not both.');
    if (request.fromScale === undefined) throw new BadInputError(`An init image needs fromScale: the first scale sampled under the prompt (1 to ${patchNums.length + 1}).`);
    checkImageFromScale('fromScale', request.fromScale, patchNums.length);
    checkInitImage(request.initImage);
    if (!model.encoder) throw new BadInputError(`The model ${model.manifest.name} has no encoder graph, so it cannot start from an image.`);
    init = { image: request.initImage, fromScale: request.fromScale };
  } else if (request.fromScale !== undefined) {
    throw new BadInputError(`fromScale = ${JSON.stringify(request.fromScale)} needs an init image to take the earlier scales from.`);
  }
  return { settings, structure: { ids: prompt.ids }, detail, negative, vary: request.vary, init, warnings };
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

/** What every step of one request shares. */
interface Loop {
  settings: SamplingSettings;
  /** From this scale on the steps run on the conditional rows alone. */
  conditionalFrom: number;
  negative?: Condition;
  /** Scale j's transformer input [2B, pn_j², C] (j ≥ 1), from scaleUpdate, until no step needs it. */
  inputs: (Tensor | undefined)[];
}

/**
 * The transformer's state under one condition: the KV cache, the head's condition, and the
 * steps taken (step 0 reads the text window, step j ≥ 1 the tokens of scale j). The text enters
 * HART only here, as the cache's prefix that every image token attends to (and as the head's
 * pooled condition), so a new condition needs a new cache, filled again from step 0.
 */
class Attention {
  steps = 0;
  paired = false;

  constructor(
    readonly condition: Condition,
    readonly cache: KvCache,
    public headCond: Tensor,
    /** Step 0's input (the condition graph's x), freed once step 0 has run. */
    public text: Tensor | undefined,
  ) {}

  dispose(run: Run): void {
    this.cache.dispose();
    run.free(this.headCond);
    if (this.text) run.free(this.text);
    this.text = undefined;
  }
}

/** Context for `condition` (and the negative prompt or zeros) → condition graph → a new cache. */
async function openAttention(run: Run, loop: Loop, condition: Condition): Promise<Attention> {
  const { ort, manifest, sessions } = run.model;
  const { width, heads, depth } = manifest.model;
  const unconditional = loop.conditionalFrom === 0 ? 'none' : (loop.negative?.features ?? 'zeros');
  const context = run.own(contextTensor(ort, manifest.textEncoder, condition.features!, unconditional, IMAGES));
  if (run.options.trace) run.options.trace({ kind: 'context', data: await readFloats(context) });
  const conditioned = await run.time('textEncoder', () => sessions.condition.run({ context }, ['x', 'head_cond'], run.signal));
  run.free(context);
  const x = run.own(conditioned.x);
  const headCond = run.own(conditioned.head_cond);
  const rows = loop.conditionalFrom === 0 ? IMAGES : 2 * IMAGES;
  return new Attention(condition, new KvCache(ort, depth, rows, heads, width / heads, kvCacheDtype(sessions.transformer)), headCond, x);
}

/**
 * Transformer step j (0: the text window; j ≥ 1: scale j's tokens) under `attention`, and with
 * `withHead` the guided logits of scale j (for step 0 those of the last text position, the 1×1
 * scale). Steps of scales ≥ `conditionalFrom` run on the conditional rows alone (the cache then
 * keeps those rows, the head gets them paired, see stepLogits). The last scale's keys and values
 * are never read again: the cache is not extended then and is freed at once, and its hidden
 * states are returned for the diffusion head.
 */
async function runStep(run: Run, loop: Loop, attention: Attention, j: number, withHead: boolean): Promise<{ logits?: Float32Array; hidden?: Tensor }> {
  const { ort, sessions, manifest } = run.model;
  const { patchNums, width, heads, ropeTheta, vocabSize } = manifest.model;
  const window = manifest.textEncoder.contextTokens;
  const K = patchNums.length;
  const headDim = width / heads;
  const conditionalOnly = j >= loop.conditionalFrom;
  if (conditionalOnly && !attention.paired) {
    attention.headCond = await run.time('head', () => pairedHeadCond(run, attention.headCond));
    attention.paired = true;
  }
  const { settings } = loop;
  const promptTokens = attention.condition.ids.length;
  const negativeTokens = loop.negative?.ids.length;
  let x: Tensor;
  let rope: RopeTables;
  if (j === 0) {
    x = attention.text!;
    rope = textRope(IMAGES, window, promptTokens, headDim, ropeTheta, negativeTokens);
  } else {
    // scaleUpdate writes both halves of x (the same rows twice): a view of the first is enough.
    x = conditionalOnly ? leadingRows(ort, loop.inputs[j]!, IMAGES) : loop.inputs[j]!;
    rope = scaleRope(IMAGES, patchNums[j], patchNums[K - 1], promptTokens, headDim, ropeTheta, negativeTokens);
    if (conditionalOnly) attention.cache.keepLeadingRows(IMAGES);
  }
  if (conditionalOnly) rope = leadingRopeRows(rope, IMAGES);
  const last = j === K - 1;
  const hidden = run.own(await run.time('transformer', () => transformerStep(ort, sessions.transformer, attention.cache, x, rope, !last, run.signal)));
  attention.steps = j + 1;
  if (j === 0) {
    run.free(attention.text!);
    attention.text = undefined;
  }
  if (last) attention.cache.dispose();
  let logits: Float32Array | undefined;
  if (withHead) {
    logits = await stepLogits(run, hidden, attention.headCond, guidanceWeight(settings.cfg, j, K, settings.guidedScales), conditionalOnly);
    if (j === 0) logits = lastTextLogits(logits, IMAGES, window, vocabSize);
  }
  if (last) return { logits, hidden };
  run.free(hidden);
  return { logits };
}

/**
 * Scale k's tokens: sampled from its logits (or teacher-forced), or, on a scale a vary keeps,
 * the kept map without sampling. Returns them with their codebook vectors and the vectors f_hat
 * receives (the Gumbel-smoothed ones when smoothing is on: for a kept scale those come from the
 * scale's logits and its own seed's Gumbel draws, which gives back the source image's latent).
 */
async function sampleTokens(
  run: Run,
  draws: Draws,
  settings: SamplingSettings,
  k: number,
  logits: Float32Array | undefined,
  keptMap?: Int32Array,
): Promise<{ indices: Int32Array; hard: Float32Array; vectors: Float32Array }> {
  const { manifest, codebook } = run.model;
  const { patchNums, vocabSize: vocab, latentChannels: cv } = manifest.model;
  const K = patchNums.length;
  const positions = IMAGES * patchNums[k] ** 2;
  const filter = { topK: topKAt(settings.topK, k), topP: settings.topP, temperature: settings.temperature };
  const trace = run.options.trace;

  if (logits) trace?.({ kind: 'logits', scale: k, data: logits });
  const sampled = keptMap && (!settings.smooth || !logits) ? undefined : await run.time('sampling', () => sampleScale(logits!, positions, vocab, filter, draws.token(k, positions), settings.smooth));
  const indices = keptMap ?? run.options.forcedTokens?.[k] ?? sampled!.indices;
  if (indices.length !== positions) throw new BadInputError(`Forced tokens of scale ${k} have ${indices.length} values, expected ${positions}.`);
  trace?.({ kind: 'tokens', scale: k, data: indices });
  const hard = lookupCodebook(codebook, cv, indices);
  // A scale kept from an init image has no logits: its vectors are its codewords, as the
  // tokenizer adds them.
  if (!settings.smooth || !logits) return { indices, hard, vectors: hard };
  const vectors = await run.time('sampling', () => {
    const ratio = smoothingRatio(Math.min(k, K - 2), K);
    return smoothVectors(sampled!.kept!, positions, vocab, ratio, smoothingTau(ratio), draws.gumbel(k, positions * vocab), codebook, cv);
  });
  return { indices, hard, vectors };
}

/** Emits the scale's event, with a preview of f_hat unless previews are off. */
async function reportScale(run: Run, k: number, fHat: Float32Array, previews: boolean): Promise<void> {
  const { ort, sessions, manifest } = run.model;
  const { patchNums, latentChannels: cv } = manifest.model;
  const side = patchNums[patchNums.length - 1];
  const preview = previews ? await run.time('preview', () => previewImage(ort, sessions.preview, fHat, cv, side, run.signal)) : undefined;
  run.emit({ type: 'scale', index: k, count: patchNums.length, preview, elapsedMs: run.elapsed() });
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

/**
 * The last scale kept from an init image (fromScale K + 1): its codewords, plus with `residual` on
 * the image's own continuous residual f − f_hat in place of the diffusion head's. The decoder then
 * sees f_hat + (f − f_hat): the tokenizer's continuous reconstruction of the image (its discrete
 * one, decode(f_hat), with `residual` off).
 */
async function keptLastScale(run: Run, settings: SamplingSettings, fHat: Float32Array, vectors: Float32Array, residual: Float32Array, previews: boolean): Promise<Float32Array> {
  const { patchNums, latentChannels: cv } = run.model.manifest.model;
  const K = patchNums.length;
  const side = patchNums[K - 1];
  const discrete = addLastScale(fHat, vectors, IMAGES, cv, side);
  await reportScale(run, K - 1, discrete, previews);
  if (!settings.residual) {
    run.options.trace?.({ kind: 'fHat', scale: K - 1, data: discrete });
    return discrete;
  }
  const area = side * side;
  const result = new Float32Array(discrete.length);
  for (let i = 0; i < result.length; i++) result[i] = discrete[i] + residual[i];
  // The residual is channel-major like f_hat; traced token-major as the diffusion head's is.
  const tokenMajor = new Float32Array(residual.length);
  for (let p = 0; p < area; p++) for (let ch = 0; ch < cv; ch++) tokenMajor[p * cv + ch] = residual[ch * area + p];
  run.options.trace?.({ kind: 'residual', data: tokenMajor });
  run.options.trace?.({ kind: 'fHat', scale: K - 1, data: result });
  return result;
}

export async function generate(model: LoadedModel, request: GenerateRequest, options: PipelineOptions = {}): Promise<GenerateResult> {
  const run = new Run(model, options);
  const { settings, structure, detail, negative, vary: varied, init, warnings } = prepare(model, request);
  throwIfCancelled(options.signal);

  const { patchNums, latentChannels: cv, imageSize } = model.manifest.model;
  const K = patchNums.length;
  const side = patchNums[K - 1];
  const previews = request.previews !== false;
  // An init image becomes a vary of itself: its token maps are kept like an earlier image's, under
  // this request's seed.
  let encoded: EncodedImage | undefined;
  if (init) {
    const session = await run.time('encoder', () => model.encoder!());
    const pixels = await run.time('encoder', () => imageToTensor(init.image, imageSize));
    throwIfCancelled(options.signal);
    encoded = await run.time('encoder', () => encodeImage(model.ort, session, model.manifest.model, pixels, options.signal));
  }
  const vary: VaryRequest | undefined = encoded ? { fromScale: init!.fromScale, tokens: { maps: encoded.maps, seeds: encoded.maps.map(() => request.seed) } } : varied;
  // The first sampled scale: a vary keeps the scales before it (their maps and their seeds); an
  // init image's fromScale K + 1 keeps all of them.
  const start = vary ? vary.fromScale - 1 : 0;
  const seedOf = (k: number) => (k < start ? vary!.tokens.seeds[k] : request.seed);
  const draws = new Draws(request.seed, seedOf, options.draws);
  run.emit({ type: 'start', scales: K, width: imageSize, height: imageSize, warnings });

  // From this scale on guidance is 0 everywhere (the diffusion head included): the unconditional
  // rows influence nothing, so those steps run on the conditional rows alone.
  const conditionalFrom = options.bothRows ? K : firstUnguidedScale(settings.cfg, K, settings.guidedScales);
  const loop: Loop = { settings, conditionalFrom, negative: conditionalFrom === 0 ? undefined : negative, inputs: [] };
  // Every text is encoded in one text-encoder run, before the transformer's cache grows.
  const texts = [structure, ...(detail ? [detail.condition] : []), ...(loop.negative ? [loop.negative] : [])];
  const features = await run.time('textEncoder', () => encodeTexts(model.ort, model.sessions.textEncoder, model.manifest.textEncoder, texts.map((t) => t.ids), options.signal));
  texts.forEach((text, i) => (text.features = features[i]));
  if (model.freeTextEncoderAfterUse) await run.time('textEncoder', () => model.sessions.textEncoder.suspend());

  const conditionAt = (k: number) => (detail && k >= detail.from ? detail.condition : structure);
  let attention: Attention | undefined;
  try {
    let fHat: Float32Array = new Float32Array(IMAGES * cv * side * side);
    const maps: Int32Array[] = [];
    for (let k = 0; k < K; k++) {
      throwIfCancelled(options.signal);
      const keptMap = k < start ? vary!.tokens.maps[k] : undefined;
      let logits: Float32Array | undefined;
      let hidden: Tensor | undefined;
      // A kept scale needs no logits (nor a transformer step of its own yet), unless smoothing
      // turns a varied image's tokens into the latent through them (an init image's tokens are
      // its latent as they are).
      if (!keptMap || (settings.smooth && !encoded)) {
        const condition = conditionAt(k);
        if (attention?.condition !== condition) {
          // A new condition (the first one, or the detail prompt's switch): its cache is filled
          // over the text and every earlier scale's tokens, one step per scale without the head.
          // The transformer graph takes any number of new positions, but attends unmasked over
          // all of them; HART's scales see only earlier ones (block-causal), so the scales of a
          // prefix cannot share one step.
          attention?.dispose(run);
          attention = undefined;
          const prefixStarted = now();
          attention = await openAttention(run, loop, condition);
          for (let j = 0; j < k; j++) {
            throwIfCancelled(options.signal);
            await runStep(run, loop, attention, j, false);
            releaseInput(run, loop, j, detail !== undefined && attention.condition !== detail.condition);
          }
          if (k > 0) run.timings.prefix += now() - prefixStarted;
        }
        ({ logits, hidden } = await runStep(run, loop, attention, k, true));
        releaseInput(run, loop, k, detail !== undefined && attention.condition !== detail.condition);
      }
      const sampled = await sampleTokens(run, draws, settings, k, logits, keptMap);
      maps[k] = Int32Array.from(sampled.indices);
      if (k < K - 1) {
        const update = await run.time('scaleUpdate', () => updateScale(model.ort, model.sessions.scaleUpdate, model.manifest.model, model.scaleTables, k, fHat, sampled.vectors, IMAGES, options.signal));
        fHat = update.fHat;
        loop.inputs[k + 1] = run.own(update.xNext);
        options.trace?.({ kind: 'fHat', scale: k, data: fHat });
        await reportScale(run, k, fHat, previews);
      } else if (keptMap) {
        fHat = await keptLastScale(run, settings, fHat, sampled.vectors, encoded!.residual, previews);
      } else {
        throwIfCancelled(options.signal);
        fHat = await lastScale(run, draws, settings, fHat, sampled, hidden!, previews);
      }
    }
    run.timings.reusedScales = start;

    throwIfCancelled(options.signal);
    run.emit({ type: 'decode', elapsedMs: run.elapsed() });
    const [image] = await run.time('decoder', () => decodeImage(model.ort, model.sessions.decoder, fHat, IMAGES, cv, side, options.signal));
    run.timings.total = run.elapsed();
    return {
      image,
      prompt: request.prompt,
      seed: request.seed,
      settings,
      model: model.manifest.name,
      backend: model.backend.backend,
      timings: run.timings,
      warnings,
      ...(negative ? { negativePrompt: request.negativePrompt } : {}),
      ...(detail ? { detailPrompt: request.detailPrompt, detailFrom: request.detailFrom } : {}),
      ...(vary && !encoded ? { variedFrom: vary.fromScale } : {}),
      ...(encoded ? { fromScale: init!.fromScale } : {}),
      tokens: { maps, seeds: maps.map((_, k) => seedOf(k)) },
    };
  } finally {
    attention?.dispose(run);
    run.freeAll();
  }
}

/**
 * Frees scale j's transformer input once its step has run, unless a later condition (the detail
 * prompt's) will step over it again.
 */
function releaseInput(run: Run, loop: Loop, j: number, rebuildLater: boolean): void {
  const input = loop.inputs[j];
  if (j === 0 || !input || rebuildLater) return;
  run.free(input);
  loop.inputs[j] = undefined;
}
