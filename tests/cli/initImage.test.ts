// `npm run generate -- --init-image FILE --from-scale K` as a user runs it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/engine/png';
import { FIXTURE } from '../engine/golden';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(tmpdir(), 'hart-cli-init-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cli(...args: string[]) {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/generate.ts', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** A 48×40 RGB PNG (not the model's size, not square, no alpha channel). */
function pngFile(name: string): string {
  const png = new PNG({ width: 48, height: 40, colorType: 2 });
  for (let i = 0; i < png.data.length; i++) png.data[i] = i % 4 === 3 ? 255 : (i * 37) % 251;
  const file = path.join(work, name);
  writeFileSync(file, PNG.sync.write(png, { colorType: 2 }));
  return file;
}

const PROMPT = ['--model', FIXTURE, '--prompt', 'a red circle on a blue background'];

describe('npm run generate --init-image', () => {
  it('starts from a PNG: the JSON line and the PNG record the scale; the same run gives the same bytes', () => {
    const image = pngFile('start.png');
    const out = path.join(work, 'out.png');
    const run = cli(...PROMPT, '--init-image', image, '--from-scale', '3', '--seed', '2', '--out', out, '--json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const line = JSON.parse(run.stdout.trim());
    expect(line).toMatchObject({ initImage: image, fromScale: 3, width: 32, height: 32 });
    expect(line.timings.encoder).toBeGreaterThan(0);
    const bytes = readFileSync(out);
    expect(readPngText(bytes)).toMatchObject({ 'from image, scale': '3' });
    const again = path.join(work, 'again.png');
    expect(cli(...PROMPT, '--init-image', image, '--from-scale', '3', '--seed', '2', '--out', again).status).toBe(0);
    expect(PNG.sync.read(readFileSync(again)).data.equals(PNG.sync.read(bytes).data)).toBe(true);
  });

  it('exits 2 with one line: the image without --from-scale, the scale without an image, an unreadable image, a scale outside the range', () => {
    const image = pngFile('bad-args.png');
    const text = path.join(work, 'notes.png');
    writeFileSync(text, 'not an image');
    const jpeg = path.join(work, 'photo.jpg');
    writeFileSync(jpeg, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]));
    const cases: [string[], RegExp][] = [
      [['--init-image', image], /^error: --init-image needs --from-scale K .* or --mask\.$/],
      [['--from-scale', '2'], /^error: --from-scale 2 needs --init-image FILE/],
      [['--init-image', path.join(work, 'missing.png'), '--from-scale', '2'], /^error: --init-image .*missing\.png: no such file\.$/],
      [['--init-image', text, '--from-scale', '2'], /^error: --init-image .*notes\.png: not a readable PNG/],
      [['--init-image', jpeg, '--from-scale', '2'], /^error: --init-image .*photo\.jpg: JPEG is not supported; convert it to PNG\.$/],
      [['--init-image', image, '--from-scale', '0'], /^error: --from-scale 0: expected a whole number ≥ 1/],
      [['--init-image', image, '--from-scale', '6'], /^error: --from-scale 6: expected a whole number from 1 to 5: the model has 4 scales \(5 keeps them all\)\.$/],
    ];
    for (const [args, message] of cases) {
      const run = cli(...PROMPT, '--out', path.join(work, 'never.png'), ...args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(run.stderr.trim(), args.join(' ')).toMatch(message);
    }
  });
});
