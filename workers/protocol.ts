// The contract between the page and the engine worker. Both sides import these types;
// the worker implements WorkerApi, the page calls it through comlink.
import type {
  CatalogNeeds,
  EngineErrorCode,
  GenerateEvent,
  GenerateRequest,
  GenerateResult,
  ImportModelProgress,
  ImportSource,
  LoadProgress,
  ModelInfo,
  NeedsCheck,
  PromptAnalysis,
} from '../src/engine/index';
import { isEngineErrorCode, toEngineError } from '../src/engine/index';

export type BackendChoice = 'auto' | 'webgpu' | 'wasm';

/**
 * Where a model package comes from. URLs are fetched (and cached) by the engine; local folders
 * are read from the user's disk, either through a directory handle (File System Access API)
 * or through the files of an `<input webkitdirectory>`.
 */
export type ModelSource =
  | { kind: 'url'; url: string }
  | { kind: 'directory'; handle: FileSystemDirectoryHandle }
  | { kind: 'files'; files: File[] };

export interface WorkerLoadOptions {
  backend: BackendChoice;
}

/** A model of the catalog to import: its id (where the package goes) and where it comes from. */
export interface ImportRequest {
  id: string;
  source: ImportSource;
}

export interface WorkerImportOptions {
  /** The app's base URL: the package goes to `<appBase>imported/<id>/`. */
  appBase: string;
}

export interface ImportOutcome {
  /** The package URL to load. */
  url: string;
  files: number;
  /** Files a previous import had finished, kept. */
  kept: number;
  bytesRead: number;
  bytesWritten: number;
  seconds: number;
}

/** Failures cross the worker boundary as plain data, never as stacks. */
export interface AppFailure {
  code: EngineErrorCode | 'worker-crashed';
  message: string;
}

export interface WorkerApi {
  load(
    source: ModelSource,
    options: WorkerLoadOptions,
    onProgress?: (progress: LoadProgress) => void,
  ): Promise<ModelInfo>;
  generate(request: GenerateRequest, onEvent?: (event: GenerateEvent) => void): Promise<GenerateResult>;
  /** Stops the running generation, if any; resolves at once. */
  cancel(): Promise<void>;
  /** Stops the model load or import under way, if any (the loaded model stays); resolves at once. */
  cancelLoad(): Promise<void>;
  /**
   * Imports a published checkpoint into the package cache; the loaded model stays loaded and
   * usable meanwhile. Cancelled by cancelLoad.
   */
  importModel(request: ImportRequest, options: WorkerImportOptions, onProgress?: (progress: ImportModelProgress) => void): Promise<ImportOutcome>;
  analyzePrompt(prompt: string): Promise<PromptAnalysis>;
  /** Whether this machine can run a model of the catalog, asked before anything is downloaded. */
  checkNeeds(needs: CatalogNeeds, diskBytes: number, options: WorkerLoadOptions): Promise<NeedsCheck>;
}

export function isAppFailure(value: unknown): value is AppFailure {
  const failure = value as Partial<AppFailure> | null;
  return (
    typeof failure === 'object' &&
    failure !== null &&
    typeof failure.message === 'string' &&
    (failure.code === 'worker-crashed' || isEngineErrorCode(failure.code))
  );
}

/** Turns anything thrown into an AppFailure, as the engine normalises its own failures. */
export function toAppFailure(error: unknown): AppFailure {
  if (isAppFailure(error)) return { code: error.code, message: error.message };
  return toEngineError(error).toJSON();
}
