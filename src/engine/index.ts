// The engine's entry points: load a model package onto a backend, and wrap it as an `Engine`.
import { chooseBackend, watchDeviceLoss, type BackendRequest, type GpuLike, type Ort } from './backend';
import { BadPackageError, EngineError, toEngineError } from './errors';
import { createFetchIO, type PackageIO } from './io';
import { GRAPH_NAMES, type GraphName } from './manifest';
import { graphVariant, neededFiles, readManifest, readTables, readVerified } from './modelPackage';
import { generate, type LoadedModel, type PipelineOptions } from './pipeline';
import { SCALE_UPDATE_GPU_OUTPUTS, scaleTables } from './quantizer';
import { sharedQueue, type RunQueue } from './queue';
import { diffusionConstants } from './schedule';
import { createGraphSession, type GraphSession, type SessionContext } from './session';
import { PromptTokenizer } from './textEncoder';
import { transformerGpuOutputs } from './transformer';
import type { Engine, GenerateRequest, GenerateResult, LoadProgress, ModelInfo } from './types';

export type * from './types';
export { EngineError } from './errors';
export type { BackendRequest, GpuLike, Ort } from './backend';
export type { PackageIO } from './io';
export { createFetchIO, createFileListIO, createDirectoryHandleIO, createFileMapIO } from './io';
export { encodePng, readPngText } from './png';

export interface LoadOptions {
  /** The ORT module: `onnxruntime-web/webgpu` in browsers, `onnxruntime-node` or `onnxruntime-web` in Node. */
  ort: Ort;
  /** How to read the package; a fetch-based reader of `source` (with Cache Storage) by default. */
  io?: PackageIO;
  backend?: BackendRequest;
  /** `navigator.gpu` by default (tests inject a fake). */
  gpu?: GpuLike | null;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
  /** The queue every create and run goes through; one shared queue by default. */
  queue?: RunQueue;
  /** Run one full generation while loading, so shaders compile before the first request. */
  warmup?: boolean;
}

/** Outputs each graph keeps on the GPU (WebGPU only): what only other graphs read. */
function gpuOutputs(name: GraphName, depth: number): string[] {
  if (name === 'transformer') return transformerGpuOutputs(depth);
  if (name === 'condition') return ['x', 'head_cond'];
  if (name === 'scaleUpdate') return SCALE_UPDATE_GPU_OUTPUTS;
  return [];
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new EngineError('cancelled', 'Loading was cancelled.');
}

/** Loads and verifies a package and creates its sessions: what the pipeline runs on. */
export async function loadModel(source: string, options: LoadOptions): Promise<LoadedModel> {
  const { ort, signal, onProgress } = options;
  const io = options.io ?? createFetchIO(source);
  const queue = options.queue ?? sharedQueue;

  onProgress?.({ phase: 'manifest', file: 'manifest.json', loaded: 0, total: 1 });
  const manifest = await readManifest(io, signal);
  onProgress?.({ phase: 'manifest', file: 'manifest.json', loaded: 1, total: 1 });

  const backend = await chooseBackend({ ort, requested: options.backend ?? 'auto', gpu: options.gpu });
  const files = await readVerified(io, manifest, neededFiles(manifest, backend.fp16), onProgress, signal);

  const tables = readTables(manifest, files);
  let tokenizerJson: unknown;
  try {
    tokenizerJson = JSON.parse(new TextDecoder().decode(files.get(manifest.tokenizer)!));
  } catch (error) {
    throw new BadPackageError(`is not valid JSON (${(error as Error).message})`, manifest.tokenizer, { cause: error });
  }
  const tokenizer = new PromptTokenizer(tokenizerJson as object, manifest.textEncoder, manifest.tokenizer);

  const context: SessionContext = { ort, backend: backend.backend, queue };
  const sessions = {} as Record<GraphName, GraphSession>;
  try {
    for (const [i, name] of GRAPH_NAMES.entries()) {
      checkAborted(signal);
      const variant = graphVariant(manifest, name, backend.fp16);
      onProgress?.({ phase: 'upload', file: variant.path, loaded: i, total: GRAPH_NAMES.length });
      sessions[name] = await createGraphSession(
        context,
        name,
        {
          path: variant.path,
          bytes: files.get(variant.path)!,
          externalData: (variant.externalData ?? []).map((path) => ({ path, data: files.get(path)! })),
        },
        gpuOutputs(name, manifest.model.depth),
      );
      // The session holds its own copy of the weights now.
      files.delete(variant.path);
      variant.externalData?.forEach((path) => files.delete(path));
    }
    onProgress?.({ phase: 'upload', loaded: GRAPH_NAMES.length, total: GRAPH_NAMES.length });
  } catch (error) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    throw error;
  }

  const { diffusion } = manifest.model;
  const model: LoadedModel = {
    ort,
    manifest,
    backend,
    sessions,
    tokenizer,
    scaleTables: scaleTables(manifest.model, tables),
    codebook: tables.get('codebook')!,
    diffusion: diffusionConstants(diffusion.steps, diffusion.trainSteps, diffusion.schedule),
  };
  if (backend.backend === 'webgpu') watchDeviceLoss(ort, (message) => (model.deviceLost = message));
  return model;
}

/** An Engine that also exposes its loaded model and the pipeline's test hooks (trace, forced tokens). */
export interface LoadedEngine extends Engine {
  readonly model: LoadedModel;
  generate(request: GenerateRequest, options?: PipelineOptions): Promise<GenerateResult>;
}

export function modelInfo(model: LoadedModel): ModelInfo {
  const { manifest } = model;
  return {
    name: manifest.name,
    description: manifest.description,
    imageSize: manifest.model.imageSize,
    scales: [...manifest.model.patchNums],
    defaults: { ...manifest.sampling },
    examples: [...manifest.examples],
    backend: { ...model.backend },
    vocabulary: model.tokenizer.vocabulary(),
  };
}

/** Wraps a loaded model as an `Engine`: the object the worker, the CLI and tests use. */
export function createEngine(model: LoadedModel): LoadedEngine {
  let disposed = false;
  const info = modelInfo(model);
  return {
    info,
    model,
    analyzePrompt: (prompt: string) => model.tokenizer.analyze(prompt),
    async generate(request: GenerateRequest, options?: PipelineOptions): Promise<GenerateResult> {
      if (disposed) throw new EngineError('internal', 'This engine was disposed; load the model again.');
      if (model.deviceLost) throw new EngineError('device-lost', `The GPU device was lost (${model.deviceLost}); load the model again.`);
      try {
        return await generate(model, request, options);
      } catch (error) {
        throw toEngineError(error);
      }
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await Promise.all(Object.values(model.sessions).map((s) => s.release()));
    },
  };
}

/**
 * Loads the package at `source` (a URL, or with `options.io` any location) and returns a ready
 * engine. Every failure is an EngineError with a code and a message for people.
 */
export async function loadEngine(source: string, options: LoadOptions): Promise<LoadedEngine> {
  let engine: LoadedEngine | undefined;
  try {
    engine = createEngine(await loadModel(source, options));
    if (options.warmup) {
      const count = engine.info.scales.length;
      options.onProgress?.({ phase: 'warmup', loaded: 0, total: count });
      await engine.generate(
        { prompt: engine.info.examples[0] ?? 'a', seed: 0 },
        {
          signal: options.signal,
          onEvent: (event) => {
            if (event.type === 'scale') options.onProgress?.({ phase: 'warmup', loaded: event.index + 1, total: count });
          },
        },
      );
    }
    return engine;
  } catch (error) {
    await engine?.dispose();
    throw toEngineError(error);
  }
}
