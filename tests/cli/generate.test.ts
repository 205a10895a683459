// The CLI as a user runs it: a child process, exit codes, PNG files with their metadata.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/cli/generate';
import { readPngText } from '../../src/engine/png';
import { FIXTURE } from '../engine/golden';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(tmpdir(), 'hart-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function textFile(name: string, content: string | Buffer): string {
  const file = path.join(work, name);
  writeFileSync(file, content);
  return file;
}

/** The CLI without blocking this process, so a server in it can answer the CLI's requests. */
function cliAsync(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/generate.ts', ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

function cli(...args: string[]) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/generate.ts', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('npm run generate', () => {
  it('writes a PNG with prompt, seed, settings and model as text chunks, and one preview per scale', () => {
    const out = path.join(work, 'one.png');
    const previews = path.join(work, 'previews');
    const run = cli('--model', FIXTURE, '--prompt', 'a red circle on a blue background', '--seed', '7', '--out', out, '--cfg', '2.5', '--guided-scales', '2', '--no-residual', '--previews', previews, '--json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const line = JSON.parse(run.stdout.trim());
    expect(line).toMatchObject({ out, seed: 7, backend: 'cpu', model: 'hart-tiny' });
    expect(Object.keys(line.timings)).toEqual(['textEncoder', 'transformer', 'head', 'sampling', 'scaleUpdate', 'preview', 'diffusion', 'decoder', 'total', 'prefix', 'reusedScales', 'encoder']);
    const text = readPngText(new Uint8Array(readFileSync(out)));
    expect(text).toMatchObject({ prompt: 'a red circle on a blue background', seed: '7', model: 'hart-tiny' });
    expect(JSON.parse(text.settings)).toMatchObject({ cfg: 2.5, residual: false, guidedScales: 2 });
    const manifest = JSON.parse(readFileSync(path.join(FIXTURE, 'manifest.json'), 'utf8'));
    expect(readdirSync(previews).sort()).toEqual(manifest.model.patchNums.map((_: number, k: number) => `scale-${String(k).padStart(2, '0')}.png`));
  });

  it('--top-k takes a number or a schedule per scale, and records the schedule in the PNG', () => {
    const topK = (text: string) => parseArgs(['--prompt', 'x', '--top-k', text]).settings.topK;
    expect(topK('600')).toBe(600);
    expect(topK('600,300@7')).toEqual({ values: [600, 300], from: [0, 7] });
    expect(topK('600@0, 300@7, 100@12')).toEqual({ values: [600, 300, 100], from: [0, 7, 12] });
    expect(parseArgs(['--prompt', 'x', '--top-k=0,5@2']).settings.topK).toEqual({ values: [0, 5], from: [0, 2] });
    for (const bad of ['600,300', '600,300@', '600@7,300@9', '600,300@7,200@7', '600,300@7,200@3', '600;300@7', '600,-1@7', 'x@2', '']) {
      expect(() => topK(bad), bad).toThrow(/^--top-k /);
    }

    const out = path.join(work, 'schedule.png');
    const run = cli('--model', FIXTURE, '--prompt', 'a red circle on a blue background', '--seed', '3', '--out', out, '--top-k', '0,3@2', '--json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout.trim()).settings.topK).toEqual({ values: [0, 3], from: [0, 2] });
    const settings = JSON.parse(readPngText(new Uint8Array(readFileSync(out))).settings);
    expect(settings.topK).toEqual({ values: [0, 3], from: [0, 2] });
  });

  it('--prompts writes 000.png, 001.png, … loading the model once, on the wasm backend too', () => {
    const list = path.join(work, 'prompts.txt');
    writeFileSync(list, 'a red circle on a blue background\n\ntwo green squares on a white background\n');
    const dir = path.join(work, 'batch');
    const run = cli('--model', FIXTURE, '--prompts', list, '--out-dir', dir, '--backend', 'wasm', '--json');
    expect(run.status).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['000.png', '001.png']);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.backend)).toEqual(['wasm', 'wasm']);
    expect(lines[0].loadMs).toBeGreaterThan(0);
    expect(lines[1].loadMs).toBe(0);
    expect(readPngText(new Uint8Array(readFileSync(path.join(dir, '001.png')))).prompt).toBe('two green squares on a white background');
  });

  it('a 40 KB --prompt runs to the end on onnxruntime-node (a long command line must not reach it), and is not repeated in full', () => {
    const prompt = 'red circle '.repeat(4000);
    expect(Buffer.byteLength(prompt)).toBeGreaterThan(40_000);
    const out = path.join(work, 'long.png');
    const run = cli('--model', FIXTURE, '--prompt', prompt, '--out', out);
    expect(run.stderr).not.toMatch(/^error/m);
    expect(run.status).toBe(0);
    expect(readPngText(new Uint8Array(readFileSync(out))).prompt).toBe(prompt);
    // The warning says where the prompt was cut and how much, in one short line.
    const warning = run.stderr.split('\n').find((line) => line.startsWith('warning:')) ?? '';
    expect(warning).toMatch(/the model reads the first \d+, up to ".*red circle", and the other \d+ tokens were cut\.$/);
    expect(warning.length).toBeLessThan(300);
    // So does the summary on stdout: the end of the kept part and a count, not 40 KB.
    expect(run.stdout.trim()).toMatch(/ — "….*red circle" \(the first \d+ of 8000 tokens; the other \d+ tokens were cut\)$/);
    expect(run.stdout.length).toBeLessThan(300);
  });

  it('exits 2 with one clear line on bad arguments or input', () => {
    const cases: [string[], RegExp][] = [
      [['--seed', '1'], /Missing --prompt/],
      [['--prompt', 'x', '--frobnicate'], /Unknown argument --frobnicate/],
      [['--prompt', 'x', '--top-k', 'many'], /--top-k many: expected a whole number/],
      [['--prompt', 'x', '--top-k', '600,300'], /--top-k 600,300: expected a whole number, or a schedule like 600,300@7/],
      [['--prompt', 'x', '--top-k', '600,300@7,200@5'], /--top-k 600,300@7,200@5: .*must be larger/],
      [['--prompt', 'x', '--cfg', '11'], /Setting cfg = 11 is invalid: it must be a number from 0 to 10/],
      [['--prompt', 'x', '--seed', '-1'], /Seed -1 is not a whole number between 0 and/],
      [['--prompts', path.join(work, 'missing.txt'), '--out-dir', work], /no such file/],
      [['--model', path.join(work, 'nowhere'), '--prompt', 'x'], /no such folder/],
      [['--model', FIXTURE, '--prompt', '  ', '--out', path.join(work, 'empty.png')], /prompt is empty/],
      [['--model', FIXTURE, '--prompt', 'a red circle', '--top-p', '3', '--out', path.join(work, 'bad.png')], /topP/],
      [['--prompt', 'x', '--seed', '9007199254740993'], /--seed 9007199254740993: the largest seed is 9007199254740991 \(2\^53 − 1\)/],
      [['--prompt', 'x', '--seed', String(2n ** 64n)], /--seed 18446744073709551616: the largest seed is 9007199254740991/],
      [['--model', FIXTURE, '--prompt', 'x', '--out', work], /^error: --out .*: is a folder; give a file name/],
      [['--model', FIXTURE, '--prompt', 'x', '--out', '/proc/hart-web-out.png'], /^error: --out \/proc\/hart-web-out\.png: the folder \/proc is not writable\./],
      [['--model', FIXTURE, '--prompt', 'x', '--out', path.join(work, `${'a'.repeat(300)}.png`)], /^error: --out .*: the file name is too long \(more than 255 bytes\)/],
      [['--model', FIXTURE, '--prompt', 'x', '--out', path.join(textFile('plain.txt', 'x'), 'x.png')], /^error: --out .*plain\.txt\/x\.png: .*plain\.txt is a file, not a folder\./],
      [['--model', FIXTURE, '--prompts', textFile('binary.txt', Buffer.from([0x61, 0x00, 0x62, 0x0a])), '--out-dir', work], /^error: --prompts .*binary\.txt: not a text file \(it holds NUL bytes\)/],
      [['--model', FIXTURE, '--prompts', textFile('latin1.txt', Buffer.from([0x72, 0xe9, 0x64, 0x0a])), '--out-dir', work], /^error: --prompts .*latin1\.txt: not a text file \(it is not valid UTF-8\)/],
      [['--model', FIXTURE, '--prompts', textFile('list.txt', 'a red circle\n'), '--out-dir', textFile('a-file', 'x')], /^error: --out-dir .*a-file: .* is a file, not a folder/],
      [['--model', FIXTURE, '--prompt', 'x', '--out', path.join(work, 'p.png'), '--previews', '/proc/hart-web-previews'], /^error: --previews .*: the folder \/proc is not writable/],
      [['--prompt', 'x', '--detail-from', '2'], /^error: --detail-from 2 needs --detail-prompt TEXT\.\n$/],
      [['--prompt', 'x', '--detail-prompt', 'a square'], /^error: --detail-prompt needs --detail-from K/],
      [['--prompt', 'x', '--detail-prompt', 'a square', '--detail-from', '0'], /^error: --detail-from 0: expected a whole number ≥ 1 \(scales count from 1\)\.\n$/],
      [['--prompt', 'x', '--detail-prompt', 'a square', '--detail-from', 'two'], /^error: --detail-from two: expected a whole number\.\n$/],
      [['--prompt', 'x', '--negative'], /^error: --negative needs a value\.\n$/],
      [['--model', FIXTURE, '--prompt', 'a red circle', '--detail-prompt', 'a square', '--detail-from', '5', '--out', path.join(work, 'bad.png')], /^error: --detail-from 5: expected a whole number from 1 to 4: the model has 4 scales\.\n$/],
      [['--model', FIXTURE, '--prompt', 'a red circle', '--detail-prompt', ' \u0007 ', '--detail-from', '2', '--out', path.join(work, 'bad.png')], /^error: detailFrom = 2 needs a detail prompt/],
    ];
    for (const [args, message] of cases) {
      const run = cli(...args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
    expect(existsSync(path.join(work, 'empty.png'))).toBe(false);
  });

  it('--negative, --detail-prompt and --detail-from change the image and are recorded in the PNG and the JSON line', () => {
    const args = ['--model', FIXTURE, '--prompt', 'a red circle on a blue background', '--seed', '4', '--json'];
    const plain = path.join(work, 'plain.png');
    const edited = path.join(work, 'edited.png');
    expect(cli(...args, '--out', plain).status).toBe(0);
    const run = cli(...args, '--out', edited, '--negative', 'a green\u0007 square', '--detail-prompt', 'a yellow triangle', '--detail-from', '3');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout.trim())).toMatchObject({ negativePrompt: 'a green square', detailPrompt: 'a yellow triangle', detailFrom: 3 });
    const text = readPngText(new Uint8Array(readFileSync(edited)));
    expect(text).toMatchObject({ prompt: 'a red circle on a blue background', 'negative prompt': 'a green square', 'detail prompt': 'a yellow triangle', 'detail from scale': '3' });
    expect(readFileSync(edited).equals(readFileSync(plain))).toBe(false);
    expect(parseArgs(['--prompt', 'x', '--negative=', '--detail-prompt=y', '--detail-from=2'])).toMatchObject({ negative: '', detailPrompt: 'y', detailFrom: 2 });
  });

  it('removes control characters from prompts: none in the PNG text chunk, none echoed on stderr', () => {
    const list = textFile('controls.txt', 'a red\u0007 circle \u001b[31mzebra\u007f\n');
    const dir = path.join(work, 'controls');
    const run = cli('--model', FIXTURE, '--prompts', list, '--out-dir', dir);
    expect(run.status).toBe(0);
    const prompt = readPngText(new Uint8Array(readFileSync(path.join(dir, '000.png')))).prompt;
    expect(prompt).toBe('a red circle [31mzebra');
    expect(run.stderr).toMatch(/warning: Unknown to the model/);
    expect(run.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    const direct = cli('--model', FIXTURE, '--prompt', 'a \u001b]0;title\u0007red circle', '--out', path.join(work, 'direct.png'));
    expect(direct.status).toBe(0);
    expect(readPngText(new Uint8Array(readFileSync(path.join(work, 'direct.png')))).prompt).toBe('a ]0;titlered circle');
    expect(direct.stderr + direct.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
  });

  it('exits 2 naming the file when the model folder holds no valid package: corrupt, truncated, another version, a manifest that is no JSON, a missing file', () => {
    const variant = (name: string, change: (folder: string) => void) => {
      const folder = path.join(work, name);
      cpSync(FIXTURE, folder, { recursive: true });
      change(folder);
      return folder;
    };
    const edit = (file: string, change: (bytes: Buffer) => Buffer) => writeFileSync(file, change(readFileSync(file)));
    const cases: [string, RegExp][] = [
      [variant('corrupt', (f) => edit(path.join(f, 'decoder.onnx'), (b) => ((b[100] ^= 0xff), b))), /^error: decoder\.onnx: sha256 is [0-9a-f]+ but the manifest says/],
      [variant('truncated', (f) => edit(path.join(f, 'tables.bin'), (b) => b.subarray(0, 100))), /^error: tables\.bin: is 100 bytes but the manifest says \d+ \(the file is truncated\)$/],
      [variant('version', (f) => edit(path.join(f, 'manifest.json'), (b) => Buffer.from(b.toString().replace('"formatVersion": 1', '"formatVersion": 99')))), /^error: manifest\.json: .*formatVersion/],
      [variant('not-json', (f) => writeFileSync(path.join(f, 'manifest.json'), '{"format": "hart-web-package",')), /^error: manifest\.json: .*JSON/],
      [variant('missing', (f) => rmSync(path.join(f, 'head.onnx'))), /^error: head\.onnx: is missing from /],
    ];
    for (const [folder, message] of cases) {
      const run = cli('--model', folder, '--prompt', 'a red circle', '--out', path.join(work, 'never.png'));
      expect(run.status, folder).toBe(2);
      expect(run.stderr.trim().split('\n'), folder).toHaveLength(1);
      expect(run.stderr.trim(), folder).toMatch(message);
    }
    expect(existsSync(path.join(work, 'never.png'))).toBe(false);
  });

  it('a model URL: a file the server does not have exits 2 naming it and its URL; a server that cannot be reached exits 1', async () => {
    const served: string[] = [];
    const server = createServer((req, res) => {
      const file = decodeURIComponent(new URL(req.url!, 'http://x').pathname.replace(/^\/pkg\//, ''));
      served.push(file);
      if (file === 'decoder.onnx' || !existsSync(path.join(FIXTURE, file))) {
        res.writeHead(404, 'Not Found');
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(readFileSync(path.join(FIXTURE, file)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/pkg/`;
    try {
      const missing = await cliAsync('--model', base, '--prompt', 'a red circle', '--out', path.join(work, 'never.png'));
      expect(missing.stderr.trim()).toBe(`error: decoder.onnx: the server answered 404 Not Found for ${base}decoder.onnx`);
      expect(missing.status).toBe(2);
      expect(served.filter((f) => f === 'decoder.onnx')).toHaveLength(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    // The same port, now closed: the network fails, not the input.
    const down = await cliAsync('--model', base, '--prompt', 'a red circle', '--out', path.join(work, 'never.png'));
    expect(down.stderr.trim()).toBe(`error: manifest.json: could not be fetched from ${base}manifest.json (the connection was refused); gave up after 3 tries`);
    expect(down.status).toBe(1);
    expect(existsSync(path.join(work, 'never.png'))).toBe(false);
  });
});
