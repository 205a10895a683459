// The worker's test hooks (testHooks.ts) against a fake engine: injected draws reach the
// engine, the sampled tokens of every scale come back as copies, and a plain request reaches
// the engine untouched.
import { describe, expect, it } from 'vitest';
import { withTestHooks, type TraceableEngine } from './testHooks';
import type { PipelineOptions } from '../../../src/engine/pipeline';
import type { GenerateRequest, GenerateResult, InjectedDraws } from '../../../src/engine/types';

function fakeEngine() {
  const calls: { request: GenerateRequest; options?: PipelineOptions }[] = [];
  const scratch = new Int32Array(4);
  const engine: TraceableEngine = {
    info: { name: 'fake' } as TraceableEngine['info'],
    analyzePrompt: (prompt) => ({ tokens: prompt.split(' '), unknown: [], truncated: false }),
    dispose: async () => undefined,
    async generate(request, options) {
      calls.push({ request, options });
      // Two scales written through one reused array, as a pipeline may do.
      for (const [k, value] of [7, 9].entries()) {
        scratch.fill(value + (options?.draws?.tokenUniforms[k]?.[0] ?? 0));
        options?.trace?.({ kind: 'tokens', scale: k, data: scratch });
        options?.trace?.({ kind: 'logits', scale: k, data: new Float32Array(2) });
      }
      return { prompt: request.prompt, seed: request.seed } as GenerateResult;
    },
  };
  return { engine, calls };
}

describe('worker test hooks', () => {
  it('passes injected draws to the engine and returns the tokens of every scale', async () => {
    const { engine, calls } = fakeEngine();
    const draws: InjectedDraws = { tokenUniforms: [new Float64Array([1]), new Float64Array([2])] };
    const signal = new AbortController().signal;
    const result = await withTestHooks(engine).generate({ prompt: 'a b', seed: 3, draws, traceTokens: true } as GenerateRequest, { signal });
    expect(calls).toHaveLength(1);
    expect(calls[0].options?.draws).toBe(draws);
    expect(calls[0].options?.signal).toBe(signal);
    expect(calls[0].request).toEqual({ prompt: 'a b', seed: 3 });
    expect((result as { tracedTokens?: Int32Array[] }).tracedTokens).toEqual([new Int32Array(4).fill(8), new Int32Array(4).fill(11)]);
  });

  it('uses draws without tracing when tokens are not asked for', async () => {
    const { engine, calls } = fakeEngine();
    const draws: InjectedDraws = { tokenUniforms: [new Float64Array([1])] };
    const result = await withTestHooks(engine).generate({ prompt: 'a', seed: 1, draws } as GenerateRequest);
    expect(calls[0].options?.draws).toBe(draws);
    expect(calls[0].options?.trace).toBeUndefined();
    expect('tracedTokens' in result).toBe(false);
  });

  it('hands a plain request to the engine as it came', async () => {
    const { engine, calls } = fakeEngine();
    const request = { prompt: 'a', seed: 1 };
    const onEvent = () => undefined;
    const result = await withTestHooks(engine).generate(request, { onEvent });
    expect(calls[0].request).toBe(request);
    expect(calls[0].options).toEqual({ onEvent });
    expect('tracedTokens' in result).toBe(false);
  });

  it('forwards info, analyzePrompt and dispose', async () => {
    const { engine } = fakeEngine();
    const hooked = withTestHooks(engine);
    expect(hooked.info.name).toBe('fake');
    expect(hooked.analyzePrompt('x y').tokens).toEqual(['x', 'y']);
    await expect(hooked.dispose()).resolves.toBeUndefined();
  });
});
