// The readers of published weights against torch's own reading: torch.save zips (fp32, fp16,
// bf16, int64, transposed and sliced views, a wrapped state dict), safetensors (fp16, bf16) and a
// sharded index, on the stand-in published files (tools/py convert.fake_published).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { findWeights, openWeights } from '../../../src/engine/import/weightFile';
import { subSource } from '../../../src/engine/import/source';
import { createFsSource } from '../../../src/engine/node';
import { runPython, toolsPy } from './python';

let dir = '';

// Every tensor of each file, as torch reads it: names in order, dtype, shape, float32 values.
const DUMP = `
import json, os, sys, numpy as np, torch
from convert.safetensors import save_file
from convert.checkpoint import read_state_dict
out = sys.argv[1]
g = torch.Generator().manual_seed(1)
base = torch.randn(6, 10, generator=g)
odd = {
    "t.transposed": base.t(), "t.sliced": base[1:4, 2:9], "t.half": base.half(), "t.bf16": base.bfloat16(),
    "t.long": torch.arange(7), "t.int": torch.arange(5, dtype=torch.int32) - 2, "t.scalar": torch.tensor(2.5),
    "t.double": base.double()[0], "t.empty": torch.zeros(0, 3), "t.bool": torch.tensor([True, False]),
}
torch.save({"state_dict": odd}, os.path.join(out, "odd.pt"))
save_file({k: v for k, v in odd.items() if k != "t.scalar"}, os.path.join(out, "odd.safetensors"))
shards = {"a.safetensors": {"x.a": base.half()}, "b.safetensors": {"x.b": base.bfloat16().t().contiguous(), "x.c": base[0]}}
for name, tensors in shards.items():
    save_file(tensors, os.path.join(out, name))
json.dump({"weight_map": {"x.b": "b.safetensors", "x.a": "a.safetensors", "x.c": "b.safetensors"}},
          open(os.path.join(out, "model.safetensors.index.json"), "w"))
files = ["odd.pt", "odd.safetensors", "model.safetensors.index.json", "fake/hart/llm/ema_model.bin",
         "fake/hart/llm/model.safetensors", "fake/hart/tokenizer/model.safetensors", "fake/qwen/model.safetensors"]
summary = {}
for f in files:
    state = read_state_dict(os.path.join(out, f))
    entries = []
    for key, t in state.items():
        values = t.float().numpy().astype(np.float32)
        name = f"{len(summary)}_{len(entries)}.f32"
        values.tofile(os.path.join(out, name))
        entries.append({"key": key, "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": name})
    summary[f] = entries
json.dump(summary, open(os.path.join(out, "summary.json"), "w"))
`;

interface Summary {
  [file: string]: { key: string; dtype: string; shape: number[]; values: string }[];
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'import-weights-'));
  toolsPy(['convert.fake_published', '--out', path.join(dir, 'fake')]);
  runPython(DUMP, [dir]);
}, 300_000);

describe('published weight files', () => {
  it('reads every tensor as torch does, lazily, in the file order', async () => {
    const summary = JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8')) as Summary;
    expect(Object.values(summary).map((e) => e.length)).toEqual([10, 9, 3, expect.any(Number), expect.any(Number), expect.any(Number), expect.any(Number)]);
    expect(summary['fake/hart/llm/ema_model.bin'].length).toBeGreaterThan(30);
    const source = createFsSource(dir);
    for (const [file, entries] of Object.entries(summary)) {
      const weights = await openWeights(source, file);
      expect(weights.keys(), file).toEqual(entries.map((e) => e.key));
      for (const e of entries) {
        const entry = weights.entry(e.key)!;
        expect(entry.shape, `${file} ${e.key}`).toEqual(e.shape);
        expect(entry.dtype === 'uint8' && e.dtype === 'bool' ? 'bool' : entry.dtype, `${file} ${e.key}`).toBe(e.dtype);
        const expected = readFileSync(path.join(dir, e.values));
        const got = await weights.readFloat32(e.key);
        expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(expected), `${file} ${e.key}`).toBe(true);
      }
    }
  }, 60_000);

  it('finds the weights of a published folder as the converter does', async () => {
    const fake = createFsSource(path.join(dir, 'fake'));
    expect(await findWeights(subSource(fake, 'hart/llm'), ['ema_model.bin', 'ema_model.safetensors'])).toBe('ema_model.bin');
    expect(await findWeights(subSource(fake, 'hart/tokenizer'))).toBe('model.safetensors');
    await expect(findWeights(subSource(fake, 'nothing'))).rejects.toThrow(/no weights in .*nothing: looked for model\.safetensors/);
  });

  it('names the file when it is not a checkpoint', async () => {
    const fake = createFsSource(path.join(dir, 'fake'));
    await expect(openWeights(fake, 'qwen/tokenizer.json.bin'.replace('.bin', ''))).rejects.toThrow(/qwen\/tokenizer\.json: is not a torch zip checkpoint/);
    await expect(openWeights(fake, 'qwen/config.safetensors')).rejects.toThrow(/qwen\/config\.safetensors: missing file/);
  });
});
