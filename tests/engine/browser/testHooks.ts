// The worker's test hooks (parity tests only): a generate request may carry injected random
// draws and ask for the sampled tokens of every scale. The app sets neither, and then the engine
// is called exactly as it would be without this wrapper.
import type { WorkerGenerateRequest, WorkerGenerateResult } from '../../../workers/protocol';
import type { LoadedEngine } from '../../../src/engine/index';
import type { TraceEntry } from '../../../src/engine/pipeline';
import type { Engine, GenerateOptions } from '../../../src/engine/types';

export type TraceableEngine = Pick<LoadedEngine, 'info' | 'analyzePrompt' | 'generate' | 'dispose'>;

export function withTestHooks(engine: TraceableEngine): Engine {
  return {
    info: engine.info,
    analyzePrompt: (prompt) => engine.analyzePrompt(prompt),
    dispose: () => engine.dispose(),
    async generate(request: WorkerGenerateRequest, options?: GenerateOptions): Promise<WorkerGenerateResult> {
      const { draws, traceTokens, ...plain } = request;
      if (!draws && !traceTokens) return engine.generate(request, options);
      const tokens: Int32Array[] = [];
      // The pipeline may reuse its arrays after the callback: keep copies.
      const trace = traceTokens
        ? (entry: TraceEntry) => {
            if (entry.kind === 'tokens') tokens[entry.scale] = entry.data.slice();
          }
        : undefined;
      const result = await engine.generate(plain, { ...options, draws: draws ?? options?.draws, trace });
      return traceTokens ? { ...result, tokens } : result;
    },
  };
}
