// The engine worker: exposes the engine host over comlink. No pipeline logic lives here; it
// only picks onnxruntime-web's WebGPU build, serves its wasm from the app, and turns a model
// source into the engine's package IO.
import * as Comlink from 'comlink';
import * as ort from 'onnxruntime-web/webgpu';
import wasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url';
import { createDirectoryHandleIO, createFileListIO, loadEngine } from '../src/engine/index';
import type { ModelSource, WorkerApi } from './protocol';
import { createEngineHost } from './engineHost';
import { relay } from './relay';
import { withTestHooks } from '../tests/engine/browser/testHooks';

// The app ships the wasm itself (no CDN), so it works offline once cached.
ort.env.wasm.wasmPaths = { wasm: wasmUrl };

function localIO(source: ModelSource) {
  if (source.kind === 'directory') return createDirectoryHandleIO(source.handle);
  if (source.kind === 'files') return createFileListIO(source.files);
  return undefined;
}

const host = createEngineHost((source, { backend, onProgress, signal }) =>
  loadEngine(source.kind === 'url' ? source.url : 'local-folder/', {
    ort,
    io: localIO(source),
    backend,
    onProgress,
    signal,
    // One full run while loading compiles the GPU shaders, so the first Generate is not the slow
    // one. The engine runs it on WebGPU only: on WASM (asked for, or the fallback of 'auto') it
    // reports the phase as skipped instead.
    warmup: true,
  }).then(withTestHooks), // injected draws and per-scale tokens for the parity tests only
);

const api: WorkerApi = {
  load: (source, options, onProgress) => relay(onProgress, (forward) => host.load(source, options, forward)),
  generate: (request, onEvent) => relay(onEvent, (forward) => host.generate(request, forward)),
  cancel: () => host.cancel(),
  analyzePrompt: (prompt) => host.analyzePrompt(prompt),
};

Comlink.expose(api);
