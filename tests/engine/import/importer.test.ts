// The TypeScript import against the Python converter, on the stand-in published files: the
// package from a skeleton plus the published folders equals `tools/py convert`'s byte for byte
// (both write the engine's fit of the preview map), and bad input stops it with the message of the Python reference (`tools/py convert.fill`).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError, importPackage, type ImportProgress } from '../../../src/engine/index';
import { createFolderSink, createFsSource, importNodeOrt, nodeSha256Hasher } from '../../../src/engine/node';
import { convertedPreview, differingFiles, PACKAGES, publishedFixture, type Fixture, type PackageName } from './published';
import { ROOT, runPython } from './python';

let fixture: Fixture;
beforeAll(() => {
  fixture = publishedFixture();
}, 1_800_000);

async function runImport(name: PackageName, out: string, extra: Partial<Parameters<typeof importPackage>[0]> = {}) {
  const spec = PACKAGES[name];
  return importPackage({
    skeleton: createFsSource(fixture.skeleton(spec.skeleton)),
    hart: createFsSource(fixture.hart),
    qwen: createFsSource(fixture.qwen),
    sink: createFolderSink(out),
    textEncoderBits: spec.bits,
    fp16: spec.fp16,
    hasher: nodeSha256Hasher,
    ...extra,
  });
}

describe('import of the published checkpoint', () => {
  it.each(Object.keys(PACKAGES) as PackageName[])('writes the converter\'s %s package byte for byte', async (name) => {
    const out = mkdtempSync(path.join(tmpdir(), `import-${name}-`));
    const progress: ImportProgress[] = [];
    const result = await runImport(name, out, { ort: await importNodeOrt('cpu'), onProgress: (p) => progress.push(p) });
    expect(differingFiles(out, fixture.converted(name))).toEqual([]);
    expect(result.manifest).toBe(readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    // Progress: every file of the package reaches its total, the manifest last.
    const finished = progress.filter((p) => p.done === p.total).map((p) => p.file);
    expect(new Set(finished)).toEqual(new Set([...result.files.map((f) => f.path), 'manifest.json']));
    expect(finished[finished.length - 1]).toBe('manifest.json');
    rmSync(out, { recursive: true });
  }, 120_000);

  it('stops a cancelled import without a manifest or a half-written file', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'import-cancel-'));
    const controller = new AbortController();
    const run = runImport('fp32', out, {
      preview: convertedPreview(fixture, 'fp32'),
      signal: controller.signal,
      onProgress: (p) => {
        if (p.file === 'transformer.onnx.data' && p.done > 0) controller.abort();
      },
    });
    await expect(run).rejects.toThrow('Loading was cancelled.');
    const left = spawnSync('ls', [out], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    expect(left).toContain('condition.onnx.data');
    expect(left).not.toContain('manifest.json');
    expect(left.filter((f) => f.endsWith('.part') || f.startsWith('transformer.onnx.data'))).toEqual([]);
  }, 120_000);
});

describe('bad published files', () => {
  /** A copy of the stand-in, changed by a Python snippet (FOLDER is its path). */
  function broken(change: string): string {
    const folder = mkdtempSync(path.join(tmpdir(), 'import-bad-'));
    cpSync(path.join(fixture.root, 'fake'), folder, { recursive: true });
    runPython(`import json, os, sys, torch\nFOLDER = sys.argv[1]\n${change}`, [folder]);
    return folder;
  }

  /** The Python reference's one-line error on the same input. */
  function pythonError(folder: string): string {
    const run = spawnSync(path.join(ROOT, 'tools/py'), ['convert.fill', '--skeleton', fixture.skeleton('plain'), '--hart', path.join(folder, 'hart'), '--qwen', path.join(folder, 'qwen'), '--out', path.join(folder, 'out')], { cwd: ROOT, encoding: 'utf8' });
    expect(run.status).not.toBe(0);
    const line = run.stderr.trim().split('\n').pop()!;
    expect(line.startsWith('error: ')).toBe(true);
    return line.slice('error: '.length);
  }

  async function tsError(folder: string): Promise<CheckpointError> {
    const out = path.join(folder, 'ts-out');
    const error = await importPackage({
      skeleton: createFsSource(fixture.skeleton('plain')),
      hart: createFsSource(path.join(folder, 'hart')),
      qwen: createFsSource(path.join(folder, 'qwen')),
      sink: createFolderSink(out),
      preview: { weight: new Float32Array(24), bias: new Float32Array(3) },
    }).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    // Nothing is written before the checks pass.
    expect(spawnSync('ls', [out], { encoding: 'utf8' }).stdout).toBe('');
    return error as CheckpointError;
  }

  it.each([
    ['missing, unexpected and mis-shaped keys', `
path = os.path.join(FOLDER, "hart/llm/ema_model.bin")
state = torch.load(path)
del state["head.bias"]
state["extra.weight"] = torch.zeros(2)
state["word_embed.bias"] = torch.zeros(3)
torch.save(state, path)`],
    ['a config value the model does not implement', `
path = os.path.join(FOLDER, "hart/tokenizer/config.json")
config = json.load(open(path)); config["quant_conv_ks"] = 1; json.dump(config, open(path, "w"))`],
    ['a missing config field', `
path = os.path.join(FOLDER, "hart/llm/config.json")
config = json.load(open(path)); del config["depth"]; json.dump(config, open(path, "w"))`],
    ['a wrong lvl_1L length', `
path = os.path.join(FOLDER, "hart/llm/ema_model.bin")
state = torch.load(path); state["lvl_1L"] = torch.zeros(1, 7); torch.save(state, path)`],
    ['unexpected tokenizer keys', `
from convert.safetensors import load_file, save_file
path = os.path.join(FOLDER, "hart/tokenizer/model.safetensors")
state = load_file(path); state["vae.extra"] = torch.zeros(1); state["other.bias"] = torch.zeros(1); save_file(state, path)`],
  ])('names %s as the Python reference does', async (_, change) => {
    const folder = broken(change);
    const error = await tsError(folder);
    expect(error.code).toBe('bad-input');
    expect(error.message).toBe(pythonError(folder));
    rmSync(folder, { recursive: true });
  }, 120_000);

  it('names a missing weight file and the folder it looked in', async () => {
    const folder = broken('os.remove(os.path.join(FOLDER, "qwen/model.safetensors"))');
    const error = await tsError(folder);
    expect(error.message).toBe(`no weights in ${path.join(folder, 'qwen')}: looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json`);
    writeFileSync(path.join(folder, 'qwen/config.json'), '{');
    expect((await tsError(folder)).message).toMatch(/qwen\/config\.json: is not valid JSON/);
    rmSync(folder, { recursive: true });
  }, 120_000);
});
