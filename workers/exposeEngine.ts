// What an engine worker does: pick onnxruntime-web's WebGPU build, serve its wasm from the app,
// turn a model source into the engine's package IO, and expose the engine host over comlink.
// No pipeline logic lives here. engine.worker.ts is the app's worker; a test worker may pass
// `wrapEngine` to add its own hooks around the loaded engine.
import * as Comlink from 'comlink';
import * as ort from 'onnxruntime-web/webgpu';
import wasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url';
import { checkNeeds, createDirectoryHandleIO, createFileListIO, importModelToCache, loadEngine, type Engine, type LoadedEngine } from '../src/engine/index';
import { createEngineHost } from './engineHost';
import type { ModelSource, WorkerApi } from './protocol';
import { relay } from './relay';

export interface ExposeOptions {
  /** Wraps each loaded engine (test workers only; the app's worker passes none). */
  wrapEngine?: (engine: LoadedEngine) => Engine;
}

function localIO(source: ModelSource) {
  if (source.kind === 'directory') return createDirectoryHandleIO(source.handle);
  if (source.kind === 'files') return createFileListIO(source.files);
  return undefined;
}

export function exposeEngine({ wrapEngine }: ExposeOptions = {}): void {
  // The app ships the wasm itself (no CDN), so it works offline once cached.
  ort.env.wasm.wasmPaths = { wasm: wasmUrl };

  const host = createEngineHost(async (source, { backend, onProgress, signal }) => {
    const engine = await loadEngine(source.kind === 'url' ? source.url : 'local-folder/', {
      ort,
      io: localIO(source),
      backend,
      onProgress,
      signal,
      // One full run while loading compiles the GPU shaders, so the first Generate is not the slow
      // one. The engine runs it on WebGPU only: on WASM (asked for, or the fallback of 'auto') it
      // reports the phase as skipped instead.
      warmup: true,
    });
    return wrapEngine ? wrapEngine(engine) : engine;
  }, (needs, diskBytes, { backend }) => checkNeeds(needs, diskBytes, { ort, backend }), async (request, { appBase, onProgress, signal }) => {
    // The preview map is fitted on WASM: a short run that must not share the GPU with a generation.
    const result = await importModelToCache({ id: request.id, source: request.source, appBase, ort, backend: 'wasm', onProgress, signal });
    return { url: result.url, files: result.files.length + 1, kept: result.kept.length, bytesRead: result.bytesRead, bytesWritten: result.bytesWritten };
  });

  const api: WorkerApi = {
    load: (source, options, onProgress) => relay(onProgress, (forward) => host.load(source, options, forward)),
    generate: (request, onEvent) => relay(onEvent, (forward) => host.generate(request, forward)),
    cancel: () => host.cancel(),
    cancelLoad: () => host.cancelLoad(),
    analyzePrompt: (prompt) => host.analyzePrompt(prompt),
    checkNeeds: (needs, diskBytes, options) => host.checkNeeds(needs, diskBytes, options),
    importModel: (request, options, onProgress) => relay(onProgress, (forward) => host.importModel(request, options, forward)),
  };

  Comlink.expose(api);
}
