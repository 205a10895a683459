// The test worker's hooks (hooked.worker.ts, browser tests only): a generate request may carry
// injected random draws, ask for the sampled tokens of every scale, or ask that the WebGPU device
// be destroyed once a scale is reported (a device lost mid-run). Without any, the engine is called
// exactly as it would be without this wrapper.
import type { WorkerApi } from '../../../workers/protocol';
import type { LoadedEngine } from '../../../src/engine/index';
import type { TraceEntry } from '../../../src/engine/pipeline';
import type { Engine, GenerateEvent, GenerateOptions, GenerateRequest, GenerateResult, InjectedDraws } from '../../../src/engine/types';

/** A generate request as the test worker takes it. */
export interface WorkerGenerateRequest extends GenerateRequest {
  /** Random draws to use instead of the seeded RNG (the golden fixture's). */
  draws?: InjectedDraws;
  /** Return the sampled token indices of every scale in `tracedTokens`. */
  traceTokens?: boolean;
  /** Destroy ORT's WebGPU device when this scale's event is reported, as a driver reset would. */
  loseDeviceAtScale?: number;
}

export interface WorkerGenerateResult extends GenerateResult {
  /** Per scale, the token indices the trace saw (only with `traceTokens`). */
  tracedTokens?: Int32Array[];
}

/** The test worker's API: the app's, with the hooked generate. */
export interface HookedWorkerApi extends Omit<WorkerApi, 'generate'> {
  generate(request: WorkerGenerateRequest, onEvent?: (event: GenerateEvent) => void): Promise<WorkerGenerateResult>;
}

export type TraceableEngine = Pick<LoadedEngine, 'info' | 'analyzePrompt' | 'generate' | 'dispose'> & { model?: Pick<LoadedEngine['model'], 'ort'> };

function destroyDevice(engine: TraceableEngine): void {
  const device = (engine.model?.ort.env.webgpu as { device?: { destroy?(): void } } | undefined)?.device;
  if (!device?.destroy) throw new Error('loseDeviceAtScale: this engine has no WebGPU device');
  device.destroy();
}

export function withTestHooks(engine: TraceableEngine): Engine {
  return {
    info: engine.info,
    analyzePrompt: (prompt) => engine.analyzePrompt(prompt),
    dispose: () => engine.dispose(),
    async generate(request: WorkerGenerateRequest, options?: GenerateOptions): Promise<WorkerGenerateResult> {
      const { draws, traceTokens, loseDeviceAtScale, ...plain } = request;
      if (loseDeviceAtScale !== undefined) {
        const onEvent = options?.onEvent;
        options = {
          ...options,
          onEvent(event) {
            if (event.type === 'scale' && event.index === loseDeviceAtScale) destroyDevice(engine);
            onEvent?.(event);
          },
        };
      }
      if (!draws && !traceTokens) return engine.generate(loseDeviceAtScale === undefined ? request : plain, options);
      const tokens: Int32Array[] = [];
      // The pipeline may reuse its arrays after the callback: keep copies.
      const trace = traceTokens
        ? (entry: TraceEntry) => {
            if (entry.kind === 'tokens') tokens[entry.scale] = entry.data.slice();
          }
        : undefined;
      const result = await engine.generate(plain, { ...options, draws: draws ?? options?.draws, trace });
      return traceTokens ? { ...result, tracedTokens: tokens } : result;
    },
  };
}
