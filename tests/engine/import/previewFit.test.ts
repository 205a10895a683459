// The preview fit: a least-squares latent -> RGB map against the package's decoder. With a
// decoder that is itself linear (a 1x1 convolution, then nearest up-sampling) the fit must
// recover its weights; on the tiny fixture it must be deterministic and print through the CLI.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fitPreviewOfPackage, previewImageCount } from '../../../src/engine/index';
import { solve } from '../../../src/engine/import/previewFit';
import { createFsIO, importNodeOrt } from '../../../src/engine/node';
import { ROOT, runPython } from './python';

const TINY = path.join(ROOT, 'tests/fixtures/tiny');
// The tiny model: Cv 8, h 4, images of 32 px.
const W = [
  [0.5, -0.25, 0.125, 0, 1, -1, 0.75, 0.2],
  [-0.3, 0.6, 0, 0.1, -0.2, 0.4, 0, -0.9],
  [0.05, 0.05, -0.7, 0.3, 0, 0.25, -0.5, 0.15],
];
const B = [0.5, 0.25, -0.125];

describe('preview fit', () => {
  it('solves a linear system by elimination with pivoting', () => {
    // The first pivot is 0: the elimination must swap rows.
    const a = [0, 2, 1, 1, 1, 0, 2, 0, 1];
    const x = solve(Float64Array.from(a), Float64Array.from([5, 3, 4]), 3, 1);
    for (let r = 0; r < 3; r++) expect(a[r * 3] * x[0] + a[r * 3 + 1] * x[1] + a[r * 3 + 2] * x[2]).toBeCloseTo([5, 3, 4][r], 12);
    expect(previewImageCount(64)).toBe(16);
    expect(previewImageCount(1024)).toBe(2);
  });

  it('recovers the map of a decoder that is linear', async () => {
    const pkg = mkdtempSync(path.join(tmpdir(), 'preview-fit-'));
    cpSync(TINY, pkg, { recursive: true });
    runPython(`
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
w = np.array(${JSON.stringify(W)}, dtype=np.float32).reshape(3, 8, 1, 1)
b = np.array(${JSON.stringify(B)}, dtype=np.float32)
nodes = [helper.make_node("Conv", ["f_hat", "w", "b"], ["rgb"]),
         helper.make_node("Resize", ["rgb", "", "scales"], ["image"], mode="nearest")]
inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array([1, 1, 8, 8], dtype=np.float32), "scales")]
graph = helper.make_graph(nodes, "decoder", [helper.make_tensor_value_info("f_hat", TensorProto.FLOAT, ["B", 8, 4, 4])],
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 3, 32, 32])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.save(model, sys.argv[1] + "/decoder.onnx")
`, [pkg]);
    const ort = await importNodeOrt('cpu');
    const map = await fitPreviewOfPackage(createFsIO(pkg), ort);
    for (let ch = 0; ch < 3; ch++) {
      for (let c = 0; c < 8; c++) expect(map.weight[ch * 8 + c]).toBeCloseTo(W[ch][c], 4);
      expect(map.bias[ch]).toBeCloseTo(B[ch], 4);
    }
  }, 60_000);

  it('is deterministic, and the CLI prints the map as JSON', async () => {
    const ort = await importNodeOrt('cpu');
    const first = await fitPreviewOfPackage(createFsIO(TINY), ort);
    const second = await fitPreviewOfPackage(createFsIO(TINY), ort);
    expect(first.weight).toEqual(second.weight);
    expect(first.bias).toEqual(second.bias);
    expect(first.weight.some((v) => v !== 0)).toBe(true);
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/fitPreview.ts', '--package', TINY], { cwd: ROOT, encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const printed = JSON.parse(run.stdout);
    expect(Float32Array.from(printed.weight.flat() as number[])).toEqual(first.weight);
    expect(Float32Array.from(printed.bias as number[])).toEqual(first.bias);
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/fitPreview.ts', '--pakage', TINY], { cwd: ROOT, encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown option --pakage/);
  }, 60_000);
});
