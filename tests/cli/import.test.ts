// `npm run import` as a user runs it: a child process on the stand-in published files, a package
// equal to the Python converter's byte for byte, that `npm run generate` runs;
// exit 2 with one line for bad input.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SKELETON, parseImportArgs } from '../../src/cli/import';
import { differingFiles, publishedFixture, type Fixture } from '../engine/import/published';
import { ROOT } from '../engine/import/python';

let fixture: Fixture;
const work = mkdtempSync(path.join(tmpdir(), 'hart-import-cli-'));
beforeAll(() => {
  fixture = publishedFixture();
}, 1_800_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cli(script: string, ...args: string[]) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', `src/cli/${script}.ts`, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('npm run import', () => {
  it('writes the package from the stand-in published folders, one progress line per file, and it generates', () => {
    const out = path.join(work, 'int8');
    const run = cli('import', '--hart', fixture.hart, '--qwen', fixture.qwen, '--out', out, '--fp16', '--text-encoder-bits', '8', '--skeleton', fixture.skeleton('fp16'));
    expect(run.status, run.stderr).toBe(0);
    const lines = run.stderr.trim().split('\n');
    const files = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')).files.map((f: { path: string }) => f.path);
    for (const file of [...files, 'manifest.json']) expect(lines.some((l) => /^\[\d+\/\d+\] /.test(l) && l.includes(` ${file}: `))).toBe(true);
    expect(lines[lines.length - 1]).toMatch(new RegExp(`^wrote ${out}: ${files.length + 1} files, [\\d,]+ bytes, in [\\d.]+ s`));
    // The converter writes the engine's preview fit too: the whole package is the same.
    expect(differingFiles(out, fixture.converted('int8'))).toEqual([]);

    const png = path.join(work, 'image.png');
    const generate = cli('generate', '--model', out, '--prompt', 'a red circle', '--seed', '3', '--out', png);
    expect(generate.status, generate.stderr).toBe(0);
    expect(existsSync(png)).toBe(true);
  }, 600_000);

  it('exits 2 with one line for bad flags, missing files and mismatched input', () => {
    const bad = (args: string[], message: RegExp) => {
      const run = cli('import', ...args);
      expect(run.status, run.stderr).toBe(2);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expect(run.stderr).toMatch(message);
    };
    const out = path.join(work, 'bad');
    bad(['--hart', fixture.hart, '--qwen', fixture.qwen], /^error: --out is required/);
    bad(['--hart', fixture.hart, '--qwen', fixture.qwen, '--out', out, '--text-encoder-bits', '6'], /--text-encoder-bits must be 4, 8 or 32, got 6/);
    bad(['--hart', fixture.hart, '--qwen', fixture.qwen, '--out', out, '--bogus'], /unknown option --bogus/);
    bad(['--hart', path.join(work, 'nowhere'), '--qwen', fixture.qwen, '--out', out, '--skeleton', fixture.skeleton('plain')], /nowhere\/llm\/config\.json: missing file/);
    bad(['--hart', fixture.hart, '--qwen', fixture.hart, '--out', out, '--skeleton', fixture.skeleton('plain')], /config\.json: missing file/);
    bad(['--hart', fixture.hart, '--qwen', fixture.qwen, '--out', out, '--fp16', '--skeleton', fixture.skeleton('plain')], /weights\.json: was made without --fp16/);
    bad(['--hart', fixture.hart, '--qwen', fixture.qwen, '--out', out, '--text-encoder-bits', '8', '--skeleton', fixture.skeleton('plain')], /has no text encoder variant with 8-bit weights \(it has 4\)/);
    bad(['--hart', fixture.hart, '--qwen', fixture.qwen, '--out', out, '--skeleton', path.join(work, 'noskeleton')], /noskeleton\/weights\.json: missing file: a skeleton folder holds the weight map/);
    expect(existsSync(path.join(out, 'manifest.json'))).toBe(false);
  }, 300_000);

  it('parses its flags', () => {
    expect(parseImportArgs(['--hart', 'https://huggingface.co/mit-han-lab/hart-0.7b-1024px', '--qwen', 'q', '--out', 'o'])).toEqual({
      hart: 'https://huggingface.co/mit-han-lab/hart-0.7b-1024px', qwen: 'q', out: 'o', fp16: false, bits: 4, skeleton: DEFAULT_SKELETON,
    });
    expect(parseImportArgs(['--hart', 'h', '--qwen', 'q', '--out', 'o', '--fp16', '--text-encoder-bits', '32', '--skeleton', 's'])).toMatchObject({ fp16: true, bits: 32, skeleton: 's' });
    expect(parseImportArgs(['--help'])).toBe('help');
    expect(() => parseImportArgs(['--hart'])).toThrow('--hart needs a value');
  });
});
