// HART's sampling loop (docs/model-package.md §4), and nothing else: each stage lives in its own
// file; this one passes values between them, emits events, times the stages, honours the
// AbortSignal between every run, and frees what it allocated however it ends.
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { decodeImage } from './decoder';
import { sampleResidual } from './diffusionHead';
import { BadInputError, CancelledError } from './errors';
import { KvCache } from './kvCache';
import type { GraphName, Manifest } from './manifest';
import { previewImage } from './preview';
import { addLastScale, updateScale, type ScaleTables } from './quantizer';
import { checkSeed, Rng, Stream } from './rng';
import { scaleRope, textRope } from './rope';
import { lookupCodebook, sampleScale, smoothVectors } from './sampling';
import { guidanceWeight, smoothingRatio, smoothingTau, type DiffusionConstants } from './schedule';
import { disposeAll, readFloats, type GraphSession } from './session';
import { resolveSettings } from './settings';
import { encodeContext, tokenizePrompt, type PromptTokenizer } from './textEncoder';
import { guidedLogits, transformerStep } from './transformer';
import type { BackendInfo, GenerateEvent, GenerateOptions, GenerateRequest, GenerateResult, InjectedDraws, StageTimings } from './types';

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
}

const now = () => performance.now();

function emptyTimings(): StageTimings {
  return { textEncoder: 0, transformer: 0, head: 0, sampling: 0, scaleUpdate: 0, preview: 0, diffusion: 0, decoder: 0, total: 0 };
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new CancelledError();
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

export async function generate(model: LoadedModel, request: GenerateRequest, options: PipelineOptions = {}): Promise<GenerateResult> {
  const started = now();
  const { ort, manifest, sessions } = model;
  const { signal, draws: injected } = options;
  const emit = (event: GenerateEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // A failing listener must not break the generation.
    }
  };
  const timings = emptyTimings();
  const time = async <T>(stage: keyof StageTimings, work: () => Promise<T> | T): Promise<T> => {
    const t = now();
    try {
      return await work();
    } finally {
      timings[stage] += now() - t;
    }
  };

  const settings = resolveSettings(manifest.sampling, request.settings);
  checkSeed(request.seed);
  const prompt = tokenizePrompt(model.tokenizer, request.prompt);
  const warnings = [...prompt.warnings];
  throwIfAborted(signal);

  const { patchNums, latentChannels: cv, vocabSize: vocab, width, heads, depth, ropeTheta: theta, imageSize } = manifest.model;
  const K = patchNums.length;
  const side = patchNums[K - 1];
  const headDim = width / heads;
  const images = 1;
  const window = manifest.textEncoder.contextTokens;
  const promptTokens = prompt.ids.length;
  const filter = { topK: settings.topK, topP: settings.topP, temperature: settings.temperature };
  const wantPreviews = request.previews !== false;
  const draws = new Draws(new Rng(request.seed), injected);

  emit({ type: 'start', scales: K, width: imageSize, height: imageSize, warnings });

  const cache = new KvCache(ort, depth, 2 * images, heads, headDim);
  const live = new Set<Tensor>(); // tensors this run owns until it ends
  const own = (t: Tensor) => (live.add(t), t);
  const free = (t: Tensor | undefined) => {
    if (!t) return;
    live.delete(t);
    disposeAll([t]);
  };

  try {
    // Text → context → the step-0 input and the head's AdaLN condition.
    const context = own(await time('textEncoder', () => encodeContext(ort, sessions.textEncoder, manifest.textEncoder, prompt.ids, images, signal)));
    if (options.trace) options.trace({ kind: 'context', data: await readFloats(context) });
    const conditioned = await time('textEncoder', () => sessions.condition.run({ context }, ['x', 'head_cond'], signal));
    free(context);
    let x: Tensor = own(conditioned.x);
    const headCond = own(conditioned.head_cond);

    // Step 0 over the text window; its last position predicts the 1×1 scale.
    let hidden = own(await time('transformer', () => transformerStep(ort, sessions.transformer, cache, x, textRope(images, window, promptTokens, headDim, theta), true, signal)));
    free(x);
    const first = await time('head', () => guidedLogits(ort, sessions.head, hidden, headCond, guidanceWeight(settings.cfg, 0, K), signal));
    free(hidden);
    let logits = lastTextLogits(first.data, images, window, vocab);

    let fHat: Float32Array = new Float32Array(images * cv * side * side);
    for (let k = 0; k < K; k++) {
      throwIfAborted(signal);
      const pn = patchNums[k];
      const positions = images * pn * pn;
      const last = k === K - 1;

      options.trace?.({ kind: 'logits', scale: k, data: logits });
      const sampled = await time('sampling', () => sampleScale(logits, positions, vocab, filter, draws.token(k, positions), settings.smooth));
      const { kept } = sampled;
      const indices = options.forcedTokens?.[k] ?? sampled.indices;
      if (indices.length !== positions) throw new BadInputError(`Forced tokens of scale ${k} have ${indices.length} values, expected ${positions}.`);
      options.trace?.({ kind: 'tokens', scale: k, data: indices });
      const hard = lookupCodebook(model.codebook, cv, indices);
      const vectors = settings.smooth
        ? await time('sampling', () => {
            const ratio = smoothingRatio(Math.min(k, K - 2), K);
            return smoothVectors(kept!, positions, vocab, ratio, smoothingTau(ratio), draws.gumbel(k, positions * vocab), model.codebook, cv);
          })
        : hard;

      if (!last) {
        const update = await time('scaleUpdate', () => updateScale(ort, sessions.scaleUpdate, manifest.model, model.scaleTables, k, fHat, vectors, images, signal));
        fHat = update.fHat;
        x = own(update.xNext);
        options.trace?.({ kind: 'fHat', scale: k, data: fHat });
        const preview = wantPreviews ? await time('preview', () => previewImage(ort, sessions.preview, fHat, cv, side, signal)) : undefined;
        emit({ type: 'scale', index: k, count: K, preview, elapsedMs: now() - started });

        const next = patchNums[k + 1];
        const rope = scaleRope(images, next, side, promptTokens, headDim, theta);
        hidden = own(await time('transformer', () => transformerStep(ort, sessions.transformer, cache, x, rope, k + 1 < K - 1, signal)));
        free(x);
        const step = await time('head', () => guidedLogits(ort, sessions.head, hidden, headCond, guidanceWeight(settings.cfg, k + 1, K), signal));
        logits = step.data;
        // The last scale's hidden states also condition the diffusion head: keep them.
        if (k + 1 < K - 1) free(hidden);
        continue;
      }

      // Last scale: tokens (plus the residual) are added to f_hat without φ or resampling.
      const discrete = addLastScale(fHat, vectors, images, cv, side);
      const preview = wantPreviews ? await time('preview', () => previewImage(ort, sessions.preview, discrete, cv, side, signal)) : undefined;
      emit({ type: 'scale', index: k, count: K, preview, elapsedMs: now() - started });
      if (!settings.residual) {
        fHat = discrete;
        options.trace?.({ kind: 'fHat', scale: k, data: fHat });
        break;
      }
      const { steps, scale } = manifest.model.diffusion;
      const noise = Array.from({ length: steps }, (_, s) => draws.noise(s, positions * cv));
      const residual = await time('diffusion', () =>
        sampleResidual(
          ort,
          sessions.diffusionHead,
          model.diffusion,
          { hidden, tokens: hard, images, positions: pn * pn, channels: cv, guidance: guidanceWeight(settings.cfg, k, K), scale, noise },
          (step, total) => emit({ type: 'diffusion', step, steps: total, elapsedMs: now() - started }),
          signal,
        ),
      );
      free(hidden);
      options.trace?.({ kind: 'residual', data: residual });
      const continuous = new Float32Array(vectors.length);
      for (let j = 0; j < continuous.length; j++) continuous[j] = vectors[j] + residual[j];
      fHat = addLastScale(fHat, continuous, images, cv, side);
      options.trace?.({ kind: 'fHat', scale: k, data: fHat });
    }

    throwIfAborted(signal);
    emit({ type: 'decode', elapsedMs: now() - started });
    const [image] = await time('decoder', () => decodeImage(ort, sessions.decoder, fHat, images, cv, side, signal));
    timings.total = now() - started;
    return {
      image,
      prompt: request.prompt,
      seed: request.seed,
      settings,
      model: manifest.name,
      backend: model.backend.backend,
      timings,
      warnings,
    };
  } finally {
    cache.dispose();
    disposeAll(live);
    live.clear();
  }
}
