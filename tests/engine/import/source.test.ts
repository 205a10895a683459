// The importer's sources: byte ranges, sizes and listings over HTTP (with Range requests and a
// redirect, as Hugging Face answers), from Blobs (a browser folder) and from a folder on disk.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobSource, createHttpSource, huggingFaceRepo, readAll, subSource, type Source } from '../../../src/engine/import/source';
import { createFsSource } from '../../../src/engine/node';

const CONTENT = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 255);
const ranges: string[] = [];
let server: Server;
let base = '';

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = req.url ?? '';
    if (url.startsWith('/owner/repo/resolve/main/')) {
      // Hugging Face redirects file downloads to its storage.
      res.writeHead(302, { location: `/storage/${url.slice('/owner/repo/resolve/main/'.length)}` }).end();
      return;
    }
    if (url === '/api/models/owner/repo/tree/main/llm') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([
        { type: 'file', path: 'llm/config.json', size: 2 }, { type: 'directory', path: 'llm/sub' }, { type: 'file', path: 'llm/a.bin', size: 1000 },
      ]));
      return;
    }
    if (url !== '/storage/llm/a.bin') {
      res.writeHead(404).end();
      return;
    }
    const range = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
    ranges.push(req.headers.range ?? '');
    if (!range) {
      res.writeHead(200, { 'content-length': CONTENT.length }).end(CONTENT);
      return;
    }
    const [start, end] = [Number(range[1]), Math.min(Number(range[2]), CONTENT.length - 1)];
    res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${CONTENT.length}`, 'content-length': end - start + 1 });
    res.end(CONTENT.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  base = `http://127.0.0.1:${address.port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function checkSource(source: Source, file: string) {
  expect(await source.size(file)).toBe(1000);
  expect(await source.exists(file)).toBe(true);
  expect(await source.exists('llm/nothing.bin')).toBe(false);
  expect(Array.from(await source.read(file, 10, 20))).toEqual(Array.from(CONTENT.subarray(10, 20)));
  expect(Array.from(await source.read(file, 990, 1000))).toEqual(Array.from(CONTENT.subarray(990)));
  expect((await source.read(file, 5, 5)).length).toBe(0);
  expect(Array.from(await readAll(source, file))).toEqual(Array.from(CONTENT));
  await expect(source.size('llm/nothing.bin')).rejects.toThrow(/llm\/nothing\.bin.*missing file|missing file/);
}

describe('import sources', () => {
  it('reads ranges over HTTP, following redirects, with Range requests', async () => {
    // A fetch that sends Hugging Face URLs to the local server.
    const fetchLocal: typeof fetch = (input, init) => fetch(String(input).replace('https://huggingface.co', base), init);
    // Without read-ahead, each read is its own Range request.
    ranges.length = 0;
    await checkSource(createHttpSource('https://huggingface.co/owner/repo', { fetch: fetchLocal, readAheadBytes: 0 }), 'llm/a.bin');
    expect(ranges).toContain('bytes=10-19');
    expect(ranges).not.toContain('');
    // With it (the default), the small reads of one block cost one request.
    const source = createHttpSource('https://huggingface.co/owner/repo', { fetch: fetchLocal });
    ranges.length = 0;
    await checkSource(source, 'llm/a.bin');
    expect(ranges).toEqual(['bytes=0-0', 'bytes=0-999']);
    await expect(source.read('llm/missing.bin', 0, 4)).rejects.toThrow('llm/missing.bin (https://huggingface.co/owner/repo/resolve/main/llm/missing.bin answered 404): missing file');
    expect(await source.list('llm')).toEqual(['a.bin', 'config.json']);
    const llm = subSource(source, 'llm');
    expect(Array.from(await llm.read('a.bin', 0, 3))).toEqual([0, 7, 14]);
    expect(llm.describe('a.bin')).toBe('https://huggingface.co/owner/repo/resolve/main/llm/a.bin');
  });

  it('names the URL when the server fails', async () => {
    const failing: typeof fetch = async () => new Response('no', { status: 503, statusText: 'Service Unavailable' });
    const source = createHttpSource('https://huggingface.co/owner/name', { fetch: failing, policy: { retryDelayMs: 1 } });
    await expect(source.read('llm/x.bin', 0, 4)).rejects.toThrow('llm/x.bin: the server answered 503 Service Unavailable for https://huggingface.co/owner/name/resolve/main/llm/x.bin; gave up after 3 tries');
  });

  it('reads a server without Range support by skipping to the range', async () => {
    const noRange: typeof fetch = async () => new Response(CONTENT, { status: 200, headers: { 'content-length': '1000' } });
    const source = createHttpSource('https://example.com/files', { fetch: noRange });
    expect(await source.size('a.bin')).toBe(1000);
    expect(Array.from(await source.read('a.bin', 500, 504))).toEqual(Array.from(CONTENT.subarray(500, 504)));
  });

  it('parses Hugging Face repository URLs', () => {
    expect(huggingFaceRepo('https://huggingface.co/mit-han-lab/hart-0.7b-1024px')).toEqual({ repo: 'mit-han-lab/hart-0.7b-1024px', revision: 'main' });
    expect(huggingFaceRepo('hf://Qwen/Qwen2-VL-1.5B-Instruct')).toEqual({ repo: 'Qwen/Qwen2-VL-1.5B-Instruct', revision: 'main' });
    expect(huggingFaceRepo('https://huggingface.co/a/b/tree/v1')).toEqual({ repo: 'a/b', revision: 'v1' });
    expect(huggingFaceRepo('https://example.com/a/b')).toBeNull();
    expect(huggingFaceRepo('http://127.0.0.1:8000/a/b', 'http://127.0.0.1:8000')).toEqual({ repo: 'a/b', revision: 'main' });
  });

  it('reads Blobs (a browser folder) and a folder on disk', async () => {
    const file = new File([CONTENT], 'a.bin');
    Object.defineProperty(file, 'webkitRelativePath', { value: 'hart/llm/a.bin' });
    const blobs = createBlobSource([file]);
    expect(blobs.location).toBe('hart');
    await checkSource(blobs, 'llm/a.bin');
    expect(await blobs.list('llm')).toEqual(['a.bin']);

    const dir = mkdtempSync(path.join(tmpdir(), 'source-'));
    mkdirSync(path.join(dir, 'llm'));
    writeFileSync(path.join(dir, 'llm/a.bin'), CONTENT);
    const fs = createFsSource(dir);
    await checkSource(fs, 'llm/a.bin');
    expect(await fs.list('llm')).toEqual(['a.bin']);
    await expect(fs.read('llm/a.bin', 990, 1010)).rejects.toThrow(/shorter than expected/);
  });
});
