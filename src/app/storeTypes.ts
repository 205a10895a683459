// The shape of the app store, split by concern; each slice lives in its own file.
import type { StateCreator } from 'zustand/vanilla';
import type {
  ImportModelProgress,
  CatalogEntry,
  GenerateRequest,
  GenerateResult,
  ImagePixels,
  InitImage,
  LoadPhase,
  LoadProgress,
  ModelInfo,
  NeedsCheck,
  PromptAnalysis,
  SamplingSettings,
  ScaleTokens,
} from '../engine/index';
import type { EngineClient } from './engineClient';
import type { GalleryEntry } from './galleryEntry';
import type { GalleryStorage } from './galleryStorage';
import type { CachedModel, ModelCache, StorageEstimate } from './modelCache';
import type { AppFailure, BackendChoice, ImportOutcome, ModelSource } from '../../workers/protocol';
import type { RunProgress } from './runStatus';

/** Everything the store needs from the outside world, injected so tests can fake it. */
export interface AppDeps {
  client: Pick<EngineClient, 'load' | 'generate' | 'cancel' | 'cancelLoad' | 'analyzePrompt' | 'checkNeeds' | 'importModel' | 'onCrash' | 'restart'>;
  /** The app's own base URL, under which imported packages are kept (import.meta.env.BASE_URL resolved). */
  appBase?: string;
  /** The model list (public/models/catalog.json): its address and a way to read it. */
  catalog?: { url: string; fetch(url: string): Promise<unknown> };
  gallery: GalleryStorage;
  encodePng(pixels: ImagePixels, text: Record<string, string>): Promise<Uint8Array>;
  /** Monotonic milliseconds, for durations. */
  now(): number;
  /** Epoch milliseconds, for the gallery's timestamps. */
  clock(): number;
  randomSeed(): number;
  newId(): string;
  /** Delay before a typed prompt is checked against the vocabulary. */
  analyzeDelayMs?: number;
  /** Downloaded models in this browser; the engine's Cache Storage functions by default. */
  cache?: ModelCache;
}

export type ModelStatus = 'idle' | 'loading' | 'ready' | 'error';

export interface ModelSlice {
  backendChoice: BackendChoice;
  modelSource?: ModelSource;
  /** How the source is shown to people: a URL or a folder name. */
  modelLabel: string;
  /**
   * 'loading' while another model loads; the one loaded before (source, label, info) stays
   * usable until the new one is ready, and after it failed.
   */
  modelStatus: ModelStatus;
  modelInfo?: ModelInfo;
  /** How the model being loaded now is shown. */
  pendingLabel?: string;
  /** The latest progress report of each phase seen during the current load. */
  loadPhases: Partial<Record<LoadPhase, LoadProgress>>;
  loadPhase?: LoadPhase;
  modelError?: AppFailure;
  /** An option of the page's address that could not be used (a `?model=` that is no URL). */
  pageError?: AppFailure;
  loadModel(source: ModelSource, label: string): Promise<void>;
  /**
   * Loads the package at an address typed by a person: absolute, or relative to `pageHref`, as
   * `?model=` takes it. One that is no http(s) URL is refused in `modelError`, nothing unloaded.
   */
  loadModelUrl(input: string, pageHref: string): Promise<void>;
  /** Stops the load under way; the model loaded before (if any) stays loaded and usable. */
  cancelLoad(): Promise<void>;
  /**
   * Set once the GPU failed and the app went on with WASM: why, in words for people (the
   * badge's reason for every model loaded from then on).
   */
  fallbackReason?: string;
  /**
   * After the WebGPU device was lost (`failure`, code `device-lost`): a fresh worker, the model
   * loaded again on WebGPU, or on WASM when that fails or the device was lost before.
   */
  recoverFromDeviceLoss(failure: AppFailure): Promise<void>;
}

export interface SettingsSlice {
  settings: SamplingSettings;
  seed: number;
  /** Draw a fresh seed for every Generate. */
  randomSeed: boolean;
  /** Images per Generate (seeds seed, seed + 1, …). */
  count: number;
  setSetting<K extends keyof SamplingSettings>(key: K, value: SamplingSettings[K]): void;
  setSeed(seed: number): void;
  setRandomSeed(on: boolean): void;
  /** Use the last run's seed again (and stop drawing random ones). */
  reuseSeed(): void;
  setCount(count: number): void;
  resetSettings(): void;
}

/** One picture of the timeline strip: a scale's preview or the final image. */
export interface Frame {
  label: string;
  pixels: ImagePixels;
  final: boolean;
}

/** A finished image that can be varied: the request that made it and its token maps. */
export interface VarySource {
  model: string;
  request: Omit<GenerateRequest, 'seed' | 'vary' | 'initImage' | 'fromScale'>;
  tokens: ScaleTokens;
}

/** An image to start from, as the person gave it (any size: the engine centre-crops and resizes it). */
export interface StartImage {
  image: InitImage;
  /** The file's name, to say which image is in use. */
  name: string;
}

export interface RunSlice {
  prompt: string;
  /** Image to image: Generate keeps this image's scales before `initFromScale` (1-based). */
  initImage?: StartImage;
  initFromScale: number;
  /** Why the last picked or dropped file could not be used. */
  initImageError?: string;
  setInitImage(image: StartImage): void;
  rejectInitImage(message: string): void;
  clearInitImage(): void;
  setInitFromScale(scale: number): void;
  /** Guidance steers away from it (empty: the model's empty condition). */
  negativePrompt: string;
  /** A second prompt for the scales from `detailFrom` (1-based) on; empty: none. */
  detailPrompt: string;
  detailFrom: number;
  /** The last finished image, which "Vary from scale k" re-samples from scale k on. */
  varySource?: VarySource;
  analysis?: PromptAnalysis;
  run: RunProgress;
  frames: Frame[];
  /** Frame shown on the canvas; null follows the newest one. */
  selectedFrame: number | null;
  firstPreviewMs?: number;
  lastSeed?: number;
  warnings: string[];
  runError?: AppFailure;
  setPrompt(prompt: string): void;
  setNegativePrompt(text: string): void;
  setDetailPrompt(text: string): void;
  setDetailFrom(scale: number): void;
  analyzePrompt(): Promise<void>;
  generate(): Promise<void>;
  /** Keeps the scales before `fromScale` of the last image and draws the rest with a new seed. */
  vary(fromScale: number): Promise<void>;
  cancel(): Promise<void>;
  selectFrame(index: number | null): void;
}

export interface GallerySlice {
  gallery: GalleryEntry[];
  galleryError?: AppFailure;
  /** True when browser storage refused the gallery (private windows): images live only as long as the page. */
  galleryUnavailable: boolean;
  loadGallery(): Promise<void>;
  keep(result: GenerateResult, durationMs: number): Promise<void>;
  deleteEntry(id: string): Promise<void>;
  /** Puts an entry's prompt, seed and settings back and generates again. */
  rerun(id: string): Promise<void>;
  /** Varies a kept image from `fromScale` on (its prompts, settings and token maps; a new seed). */
  varyEntry(id: string, fromScale: number): Promise<void>;
}

export interface CacheSlice {
  /** Packages in Cache Storage, largest first. */
  cachedModels: CachedModel[];
  /** Whether a listing has finished at least once (before that, nothing is known). */
  cacheListed: boolean;
  storageEstimate?: StorageEstimate;
  /** True once the browser agreed not to evict the cache; unset when it declined or cannot. */
  storagePersistent?: boolean;
  /** The package being deleted now. */
  deletingModel?: string;
  /** What the last delete did, for people. */
  cacheNotice?: string;
  cacheError?: string;
  refreshCachedModels(): Promise<void>;
  deleteCachedModel(baseUrl: string): Promise<void>;
  /** Asks for persistent storage, once per page; later calls do nothing. */
  persistStorage(): Promise<void>;
}

/** What a device check of a catalog model found, or why it could not be made. */
export type CatalogCheck = { status: 'checking' } | { status: 'done'; result: NeedsCheck } | { status: 'failed'; message: string };

/**
 * An import of the catalog: the device check, the download and conversion, the check of what
 * was written, then the load of the package (its own load phases).
 */
export type CatalogImport =
  | { status: 'checking' }
  | { status: 'importing'; progress?: ImportModelProgress }
  | { status: 'loading'; outcome: ImportOutcome }
  | { status: 'done'; outcome: ImportOutcome }
  | { status: 'refused' }
  | { status: 'cancelled' }
  | { status: 'failed'; message: string };

export interface CatalogSlice {
  /** The models the app offers (public/models/catalog.json), in its order. */
  catalog: CatalogEntry[];
  /** Why the list could not be read (e.g. offline on a first visit). */
  catalogError?: string;
  catalogChecks: Record<string, CatalogCheck>;
  loadCatalog(): Promise<void>;
  /** Checks this device against a model's needs, before any byte of it is downloaded. */
  checkCatalogEntry(id: string): Promise<void>;
  catalogImports: Record<string, CatalogImport>;
  /**
   * Imports a model of the catalog: checks the device first (a refusal leaves the reasons in
   * `catalogChecks` and downloads nothing), imports it into this browser's storage, then loads
   * it. The model loaded before stays usable throughout, and after a failure.
   */
  importCatalogEntry(id: string): Promise<void>;
  /** Stops the import under way (the files it finished are kept for the next one). */
  cancelImport(id: string): Promise<void>;
}

export type AppState = ModelSlice & SettingsSlice & RunSlice & GallerySlice & CacheSlice & CatalogSlice;

export type Slice<T> = StateCreator<AppState, [], [], T>;
