// Public types of the engine: what the worker, the CLI and the UI see.
// The engine itself is pure TypeScript (no DOM, no React) and runs in a Web Worker or in Node.

/** Where the graphs run. `cpu` is onnxruntime-node. */
export type BackendName = 'webgpu' | 'wasm' | 'cpu';

export interface BackendInfo {
  backend: BackendName;
  /** True when fp16 graph variants are used (WebGPU adapter with `shader-f16`). */
  fp16: boolean;
  /** Why this backend was chosen, in words a person understands. */
  reason: string;
}

/**
 * A top-k that changes with the scale: `values[i]` applies from the 0-based scale `from[i]` on,
 * until the next entry's scale. `from` starts at 0 and increases; HART's own is
 * `{ values: [600, 300], from: [0, 7] }` (600 on scales 0–6, 300 from scale 7 on).
 */
export interface TopKSchedule {
  values: number[];
  from: number[];
}

/** Top-k: one k for every scale, or a schedule per scale. */
export type TopK = number | TopKSchedule;

/** User-facing sampling settings. */
export interface SamplingSettings {
  /** Classifier-free guidance scale (HART's `cfg`). */
  cfg: number;
  /** Keep only the k most likely tokens (per scale with a schedule); 0 turns top-k off. */
  topK: TopK;
  /** Nucleus sampling mass; 0 turns top-p off. */
  topP: number;
  temperature: number;
  /** HART's Gumbel smoothing (`more_smooth`). */
  smooth: boolean;
  /** Residual diffusion on the last scale; false gives the discrete-only image. */
  residual: boolean;
  /** Guidance only on the first N scales (0 = every scale, as in HART); finer scales and the
   * residual head sample from the conditional model alone. */
  guidedScales: number;
}

/**
 * The token maps an image was drawn with: per 0-based scale k, the pn_k² codebook indices in
 * row-major order, and the seed whose draws sampled that scale (the request's seed, except on the
 * scales a vary kept from its source).
 */
export interface ScaleTokens {
  maps: Int32Array[];
  seeds: number[];
}

/** Keep the scales before `fromScale` (1-based, as "Scale k of K") of an earlier image. */
export interface VaryRequest {
  fromScale: number;
  /** The earlier image's `tokens`: at least its first `fromScale − 1` maps and seeds are read. */
  tokens: ScaleTokens;
}

/**
 * An image to start from: row-major pixels, `channels` bytes each (4: RGBA, the default; 3: RGB).
 * Any size: the engine centre-crops it to a square and resizes it to the model's resolution.
 */
export interface InitImage {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
  channels?: 3 | 4;
}

export interface GenerateRequest {
  prompt: string;
  seed: number;
  settings?: Partial<SamplingSettings>;
  /** Emit a preview after every scale (default true). */
  previews?: boolean;
  /**
   * Text that guidance steers away from: its features replace HART's empty (all-zero) condition
   * in the unconditional rows. Empty or absent: the empty condition.
   */
  negativePrompt?: string;
  /** A second prompt that conditions the scales from `detailFrom` on (1-based); both or neither. */
  detailPrompt?: string;
  detailFrom?: number;
  /**
   * Re-sample the scales from `vary.fromScale` on with this request's seed, keeping the earlier
   * ones of the image `vary.tokens` came from. The prompts and settings must be that image's.
   */
  vary?: VaryRequest;
  /**
   * Image to image: scales 1 … fromScale − 1 (1-based, as "Scale k of K") are the token maps of
   * this image, encoded and quantized by the package's encoder graph; the scales from `fromScale`
   * on are sampled under the prompt. fromScale = K + 1 keeps every scale and adds the image's own
   * continuous residual (with `residual` on): the tokenizer's reconstruction of the image.
   */
  initImage?: InitImage;
  fromScale?: number;
}

/** RGBA pixels, row-major, 4 bytes per pixel. */
export interface ImagePixels {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

export interface StageTimings {
  textEncoder: number;
  transformer: number;
  head: number;
  sampling: number;
  scaleUpdate: number;
  preview: number;
  diffusion: number;
  decoder: number;
  total: number;
  /**
   * Wall time spent filling the KV cache over scales that are not sampled (a vary's kept scales,
   * or the scales before a detail prompt's switch, again under its condition). Its graph runs
   * are counted in `transformer`, `head` and `textEncoder` as well.
   */
  prefix: number;
  /** Scales taken from `vary.tokens` or the init image instead of sampled. */
  reusedScales: number;
  /** Centre-crop, resize and the encoder graph of an init image (0 without one). */
  encoder: number;
}

export type GenerateEvent =
  | { type: 'start'; scales: number; width: number; height: number; warnings: string[] }
  | { type: 'scale'; index: number; count: number; preview?: ImagePixels; elapsedMs: number }
  | { type: 'diffusion'; step: number; steps: number; elapsedMs: number }
  | { type: 'decode'; elapsedMs: number };

export interface GenerateResult {
  image: ImagePixels;
  prompt: string;
  seed: number;
  settings: SamplingSettings;
  model: string;
  backend: BackendName;
  timings: StageTimings;
  warnings: string[];
  /** The request's negative and detail prompts, as used (absent when not given). */
  negativePrompt?: string;
  detailPrompt?: string;
  detailFrom?: number;
  /** Set on a vary: the first re-sampled scale (1-based). */
  variedFrom?: number;
  /** Set on image to image: the first scale sampled under the prompt (1-based). */
  fromScale?: number;
  /** Every scale's token map, so the image can be varied later without running it again. */
  tokens: ScaleTokens;
}

export type LoadPhase = 'manifest' | 'download' | 'upload' | 'warmup';

export interface LoadProgress {
  phase: LoadPhase;
  /** File being worked on, if any. */
  file?: string;
  /** Bytes (download) or steps (upload, warmup) done and total for this phase. */
  loaded: number;
  total: number;
  /** Set when this phase does not run in this load: why, in words for people (e.g. warm-up on WASM). */
  skipped?: string;
}

export interface ModelInfo {
  name: string;
  description: string;
  imageSize: number;
  scales: number[];
  defaults: SamplingSettings;
  examples: string[];
  backend: BackendInfo;
  /** The vocabulary's words, so a UI can point out unknown words before generating. */
  vocabulary?: string[];
  /** Whether the package has the encoder graph, so generation can start from an image. */
  imageToImage: boolean;
  /**
   * Set when files of this load could not be kept for offline use (storage full): what, how
   * big, and how full the storage is, in words for people. The model works all the same.
   */
  storageWarning?: string;
}

export type { EngineErrorCode, EngineFailure } from './errors';

/** Random draws given from outside (parity tests). Shapes follow docs/model-package.md §4. */
export interface InjectedDraws {
  /** Per scale: uniforms [B * L_k] for token sampling. */
  tokenUniforms: Float64Array[];
  /** Per scale: uniforms [B * L_k * V] for Gumbel smoothing (only read when smooth is on). */
  gumbelUniforms?: Float64Array[];
  /** 8 arrays of standard normals [B * L_last * Cv]: the start point, then the noise of steps 7..1. */
  diffusionNoise?: Float32Array[];
}

export interface PromptAnalysis {
  /** The tokens the model will see, after lowercasing and splitting. */
  tokens: string[];
  /** Words the tokenizer does not know (they become the unknown token). */
  unknown: string[];
  /** True when the prompt is longer than the text window and will be cut. */
  truncated: boolean;
  /** Where it will be cut, when it will (textEncoder.ts promptCut). */
  cut?: PromptCut;
}

/** Where a prompt longer than the text window is cut, as messages show it. */
export interface PromptCut {
  /** The end of the part the model reads, as quoted ("…" first when more comes before it). */
  keptEnd: string;
  /** Tokens the model reads (the text window). */
  read: number;
  /** Tokens cut after them. */
  cut: number;
}

export interface GenerateOptions {
  signal?: AbortSignal;
  onEvent?: (event: GenerateEvent) => void;
  draws?: InjectedDraws;
}

/** One loaded model on one backend. The worker wraps exactly one of these. */
export interface Engine {
  readonly info: ModelInfo;
  analyzePrompt(prompt: string): PromptAnalysis;
  generate(request: GenerateRequest, options?: GenerateOptions): Promise<GenerateResult>;
  dispose(): Promise<void>;
}
