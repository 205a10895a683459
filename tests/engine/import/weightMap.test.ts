// Weight map expressions on small arrays whose every element says where it came from.
import { describe, expect, it } from 'vitest';
import { CheckpointError } from '../../../src/engine/errors';
import { sourcesOf, WeightMapEvaluator, type Expr, type NDArray } from '../../../src/engine/import/weightMap';

const iota = (shape: number[]): NDArray => ({ dtype: 'float32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i) });

function evaluator(reads: string[] = []) {
  return new WeightMapEvaluator({
    async source(source, key) {
      reads.push(`${source}:${key}`);
      return iota(key === 'w' ? [2, 3, 4] : [4, 3]);
    },
    async constants(offset, length) {
      return Uint8Array.from({ length }, (_, i) => offset + i);
    },
    async preview() {
      return { weight: iota([3, 2]), bias: iota([3]) };
    },
  });
}

const values = async (expr: Expr, reads?: string[]) => {
  const v = await evaluator(reads).evaluate(expr);
  return { shape: v.shape, dtype: v.dtype, data: Array.from(v.data as Float32Array, Number) };
};
const w: Expr = { source: 'llm', key: 'w' };

describe('weight map expressions', () => {
  it('transposes, reshapes, slices, concatenates and stacks as numpy does', async () => {
    expect(await values({ op: 'transpose', perm: [2, 0, 1], x: w })).toMatchObject({ shape: [4, 2, 3], data: [0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23] });
    expect(await values({ op: 'slice', axis: 2, start: 1, end: 3, x: w })).toMatchObject({ shape: [2, 3, 2], data: [1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22] });
    expect(await values({ op: 'slice', axis: 0, start: 1, end: 9, x: w })).toMatchObject({ shape: [1, 3, 4] });
    const m: Expr = { source: 'qwen', key: 'm' };
    expect(await values({ op: 'concat', axis: 1, xs: [{ op: 'slice', axis: 1, start: 2, end: 3, x: m }, { op: 'slice', axis: 1, start: 0, end: 1, x: m }] })).toMatchObject({ shape: [4, 2], data: [2, 0, 5, 3, 8, 6, 11, 9] });
    expect(await values({ op: 'stack', axis: 0, xs: [m, m] })).toMatchObject({ shape: [2, 4, 3] });
    expect(await values({ op: 'reshape', shape: [6, 4], x: w })).toMatchObject({ shape: [6, 4] });
    await expect(values({ op: 'reshape', shape: [5, 5], x: w })).rejects.toThrow(CheckpointError);
  });

  it('reads constants, zeros, float16 and the preview map', async () => {
    expect(await values({ op: 'constant', offset: 8, length: 4, dtype: 'uint8', shape: [2, 2] })).toMatchObject({ dtype: 'uint8', data: [8, 9, 10, 11] });
    expect(await values({ op: 'zeros', shape: [2], dtype: 'int8' })).toMatchObject({ dtype: 'int8', data: [0, 0] });
    expect(await values({ op: 'fp16', x: { op: 'preview', part: 'bias' } })).toMatchObject({ dtype: 'float16', data: [0, 0x3c00, 0x4000] });
    await expect(values({ op: 'nonsense' } as unknown as Expr)).rejects.toThrow('weight map: unknown op "nonsense"');
  });

  it('quantizes each tensor once for its parts and names every source it reads', async () => {
    const reads: string[] = [];
    const ev = evaluator(reads);
    const x: Expr = { op: 'reshape', shape: [6, 4], x: w };
    const parts = await Promise.all((['weight', 'scales', 'zeros'] as const).map((part) => ev.evaluate({ op: 'int4', block: 16, part, x })));
    expect(parts.map((p) => [p.dtype, p.shape])).toEqual([['uint8', [4, 1, 8]], ['float32', [4]], ['uint8', [4]]]);
    expect(reads).toEqual(['llm:w']);
    expect(await ev.bytes({ op: 'int8cols', part: 'scale', x }, 'float32', [4])).toHaveLength(16);
    await expect(ev.bytes({ op: 'int8cols', part: 'scale', x }, 'float32', [5])).rejects.toThrow('expression gives float32 [4], the tensor is float32 [5]');
    expect(sourcesOf({ op: 'concat', axis: 0, xs: [x, { source: 'qwen', key: 'm' }] })).toEqual([{ source: 'llm', key: 'w' }, { source: 'qwen', key: 'm' }]);
  });
});
