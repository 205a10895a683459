// `npm run bench -- --compare` on the tiny fixture: the reference rebuilt from the fixture's
// recipe (random weights, seed 0), the engine on onnxruntime-node and on WASM. Checks the shape
// of the output and its arithmetic, never speed.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { defaultReference, median } from '../../src/cli/compare';
import { FIXTURE } from '../engine/golden';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STAGES = ['textEncoder', 'transformer', 'head', 'sampling', 'scaleUpdate', 'preview', 'diffusion', 'decoder', 'total'];

describe('npm run bench -- --compare', () => {
  it('times the reference, node and WASM on the same draws and prints one JSON line', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bench.ts', '--compare', '--model', FIXTURE, '--rounds', '1'], { cwd: ROOT, encoding: 'utf8', timeout: 240_000 });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/stage \(median ms\)\s+torch\s+node\s+wasm/);
    const lines = run.stdout.trim().split('\n');
    const out = JSON.parse(lines[lines.length - 1]);
    expect(out).toMatchObject({ model: 'hart-tiny', rounds: 1, same_draws: true, reference: 'random:tiny:0' });
    for (const key of ['reference_torch_ms', 'engine_node_ms', 'engine_wasm_ms', 'ratio_torch_over_node', 'ratio_wasm_over_node']) {
      expect(out[key], key).toBeGreaterThan(0);
    }
    expect(out.preview_overhead).toBeGreaterThanOrEqual(0);
    expect(out.preview_overhead).toBeLessThan(1);
    for (const who of ['torch', 'node', 'wasm']) {
      expect(Object.keys(out.stages[who])).toEqual(STAGES);
      for (const s of STAGES) expect(out.stages[who][s]).toBeGreaterThanOrEqual(0);
    }
    expect(out.stages.torch.preview).toBe(0);
    expect(out.reference_torch_ms).toBe(out.stages.torch.total);
    expect(out.engine_node_ms).toBe(out.stages.node.total);
    expect(out.engine_wasm_ms).toBe(out.stages.wasm.total);
    // One round: the ratio is that round's, and the medians are its totals (rounded to 0.1 ms,
    // so the ratios agree to that rounding).
    const near = (a: number, b: number, relative: number, absolute = 1e-3) => expect(Math.abs(a - b), `${a} vs ${b}`).toBeLessThanOrEqual(relative * Math.abs(b) + absolute);
    expect(out.ratios_per_round.torch_over_node).toEqual([out.ratio_torch_over_node]);
    expect(out.ratios_per_round.wasm_over_node).toEqual([out.ratio_wasm_over_node]);
    near(out.ratio_torch_over_node, out.reference_torch_ms / out.engine_node_ms, 0.01);
    near(out.ratio_wasm_over_node, out.engine_wasm_ms / out.engine_node_ms, 0.01);
    near(out.preview_overhead, out.stages.node.preview / out.stages.node.total, 0.05, 0.003);
    // Same weights and same draws: the tiny model's images agree pixel for pixel.
    expect(out.max_pixel_difference).toEqual({ torch_node: 0, node_wasm: 0 });
    expect(out.threads.torch).toEqual({ intraOp: 2, interOp: 1 });
  }, 240_000);

  it('derives the reference from an untrained export, else the shapes checkpoint', () => {
    expect(defaultReference('/r', { name: 'hart-tiny', description: 'Tiny. Untrained random weights (seed 3): noise.' })).toBe('random:tiny:3');
    expect(defaultReference('/r', { name: 'hart-shapes-128', description: 'Shapes.' })).toBe(path.join('/r', 'checkpoints/hart-shapes-128.pt'));
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });
});
