import { describe, expect, it } from 'vitest';
import { createEngineHost } from '../../workers/engineHost';
import { CancelledError } from '../../src/engine/errors';
import type { GenerateEvent, LoadProgress } from '../../src/engine/types';
import { createFakeEngine, fakeInfo, type FakeEngineControls } from './fakeEngine';

const url = { kind: 'url' as const, url: 'http://localhost/models/fake/' };

function hostWith(fake: FakeEngineControls) {
  const opened: unknown[] = [];
  const host = createEngineHost(async (source, options) => {
    opened.push(source);
    options.onProgress?.({ phase: 'download', file: 'a.onnx', loaded: 5, total: 10 });
    options.onProgress?.({ phase: 'warmup', loaded: 1, total: 1 });
    return fake.engine;
  });
  return { host, opened };
}

describe('engine host (the worker side)', () => {
  it('loads a model, forwards progress and returns the model info', async () => {
    const fake = createFakeEngine();
    const { host, opened } = hostWith(fake);
    const progress: LoadProgress[] = [];
    const info = await host.load(url, { backend: 'wasm' }, (p) => progress.push(p));
    expect(info.name).toBe('fake-shapes');
    expect(opened).toEqual([url]);
    expect(progress.map((p) => p.phase)).toEqual(['download', 'warmup']);
  });

  it('generates with events in pipeline order', async () => {
    const fake = createFakeEngine();
    const { host } = hostWith(fake);
    await host.load(url, { backend: 'wasm' });
    const events: GenerateEvent[] = [];
    const result = await host.generate({ prompt: 'a red circle', seed: 7 }, (e) => events.push(e));
    expect(result.seed).toBe(7);
    expect(events.map((e) => e.type)).toEqual(['start', 'scale', 'scale', 'scale', 'diffusion', 'diffusion', 'diffusion', 'decode']);
  });

  it('a new generate cancels the running one and never runs two at once', async () => {
    const fake = createFakeEngine(fakeInfo(), 5);
    const { host } = hostWith(fake);
    await host.load(url, { backend: 'wasm' });
    const first = host.generate({ prompt: 'a red circle', seed: 1 });
    await new Promise((r) => setTimeout(r, 2));
    const second = host.generate({ prompt: 'a blue square', seed: 2 });
    await expect(first).rejects.toEqual({ code: 'cancelled', message: 'Generation was cancelled.' });
    const result = await second;
    expect(result.prompt).toBe('a blue square');
    expect(fake.maxConcurrent).toBe(1);
  });

  it('cancel stops the run and the next one still works', async () => {
    const fake = createFakeEngine(fakeInfo(), 5);
    const { host } = hostWith(fake);
    await host.load(url, { backend: 'wasm' });
    const events: GenerateEvent[] = [];
    const run = host.generate({ prompt: 'a red circle', seed: 1 }, (e) => events.push(e));
    await new Promise((r) => setTimeout(r, 7));
    await host.cancel();
    await expect(run).rejects.toMatchObject({ code: 'cancelled' });
    expect(events.some((e) => e.type === 'decode')).toBe(false);
    const next = await host.generate({ prompt: 'a red circle', seed: 3 });
    expect(next.seed).toBe(3);
  });

  it('errors cross as plain {code, message} data', async () => {
    const fake = createFakeEngine();
    const { host } = hostWith(fake);
    await expect(host.generate({ prompt: 'x', seed: 1 })).rejects.toEqual({
      code: 'bad-input',
      message: 'No model is loaded yet.',
    });
    await host.load(url, { backend: 'wasm' });
    const failure = await host.generate({ prompt: '   ', seed: 1 }).catch((e: unknown) => e);
    expect(failure).not.toBeInstanceOf(Error);
    expect(failure).toEqual({ code: 'bad-input', message: 'The prompt is empty.' });
  });

  it('a failed load names the file and leaves no engine behind', async () => {
    const host = createEngineHost(async () => {
      throw Object.assign(new Error('decoder.onnx: HTTP 404 Not Found'), { code: 'fetch-failed' });
    });
    await expect(host.load(url, { backend: 'auto' })).rejects.toEqual({
      code: 'fetch-failed',
      message: 'decoder.onnx: HTTP 404 Not Found',
    });
    await expect(host.analyzePrompt('a')).rejects.toMatchObject({ code: 'bad-input' });
  });

  it('unexpected errors become internal failures with their message', async () => {
    const host = createEngineHost(async () => {
      throw new TypeError('boom');
    });
    await expect(host.load(url, { backend: 'auto' })).rejects.toEqual({
      code: 'internal',
      message: 'boom',
    });
  });

  it('loading another model disposes the previous engine', async () => {
    const a = createFakeEngine();
    const b = createFakeEngine(fakeInfo({ name: 'other' }));
    const engines = [a, b];
    const host = createEngineHost(async () => engines.shift()!.engine);
    await host.load(url, { backend: 'wasm' });
    const info = await host.load({ kind: 'url', url: 'http://localhost/other/' }, { backend: 'wasm' });
    expect(info.name).toBe('other');
    expect(a.disposed).toBe(true);
    expect(b.disposed).toBe(false);
  });

  it('a failed load of another model leaves the loaded engine in place and usable', async () => {
    const a = createFakeEngine();
    let fail = false;
    const host = createEngineHost(async () => {
      if (fail) throw Object.assign(new Error('manifest.json: HTTP 404 Not Found'), { code: 'fetch-failed' });
      return a.engine;
    });
    await host.load(url, { backend: 'wasm' });
    fail = true;
    await expect(host.load({ kind: 'url', url: 'http://localhost/missing/' }, { backend: 'wasm' })).rejects.toMatchObject({ code: 'fetch-failed' });
    expect(a.disposed).toBe(false);
    const result = await host.generate({ prompt: 'a red circle', seed: 1 });
    expect(result.prompt).toBe('a red circle');
  });

  it('a load replaced by a newer one never becomes the engine; the newer one does', async () => {
    const a = createFakeEngine();
    const b = createFakeEngine(fakeInfo({ name: 'b' }));
    const c = createFakeEngine(fakeInfo({ name: 'c' }));
    const engines = [a, b, c];
    const host = createEngineHost(async () => engines.shift()!.engine);
    await host.load(url, { backend: 'wasm' });
    const first = host.load({ kind: 'url', url: 'http://localhost/b/' }, { backend: 'wasm' });
    const second = host.load({ kind: 'url', url: 'http://localhost/c/' }, { backend: 'wasm' });
    await expect(first).rejects.toEqual({ code: 'cancelled', message: 'Loading was cancelled.' });
    expect((await second).name).toBe('c');
    expect(b.disposed).toBe(true);
    expect(a.disposed).toBe(true);
    expect(c.disposed).toBe(false);
  });

  it('analyzePrompt reports unknown words', async () => {
    const fake = createFakeEngine();
    const { host } = hostWith(fake);
    await host.load(url, { backend: 'wasm' });
    const analysis = await host.analyzePrompt('a purple circle');
    expect(analysis.unknown).toEqual(['purple']);
  });

  it('cancelLoad stops the load under way and keeps the loaded engine', async () => {
    const a = createFakeEngine();
    const b = createFakeEngine(fakeInfo({ name: 'b' }));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let calls = 0;
    const host = createEngineHost(async (_source, options) => {
      if (calls++ === 0) return a.engine;
      // An opener that finishes although it was cancelled: the host must not swap it in.
      await held;
      return b.engine;
    });
    await host.load(url, { backend: 'wasm' });
    const pending = host.load({ kind: 'url', url: 'http://localhost/b/' }, { backend: 'wasm' });
    await host.cancelLoad();
    release();
    await expect(pending).rejects.toMatchObject({ code: 'cancelled' });
    expect(a.disposed).toBe(false);
    expect(b.disposed).toBe(true);
    expect((await host.generate({ prompt: 'a red circle', seed: 1 })).prompt).toBe('a red circle');
  });

  it('imports beside the loaded engine, which generates meanwhile, and cancelLoad stops the import', async () => {
    const a = createFakeEngine();
    let signal: AbortSignal | undefined;
    const host = createEngineHost(async () => a.engine, undefined, async (request, options) => {
      signal = options.signal;
      options.onProgress?.({ phase: 'download', file: 'x', index: 0, count: 1, done: 1, total: 2 });
      await new Promise<void>((_, reject) => options.signal.addEventListener('abort', () => reject(new CancelledError('Loading was cancelled.'))));
      return { url: `${options.appBase}imported/${request.id}/`, files: 1, kept: 0, bytesRead: 0, bytesWritten: 0 };
    });
    await host.load(url, { backend: 'wasm' });
    const progress: unknown[] = [];
    const pending = host.importModel({ id: 'm', source: { kind: 'import', hart: 'h', qwen: 'q', skeleton: 's' } }, { appBase: 'http://localhost/' }, (p) => progress.push(p));
    expect((await host.generate({ prompt: 'a red circle', seed: 1 })).prompt).toBe('a red circle');
    expect(progress).toHaveLength(1);
    await host.cancelLoad();
    await expect(pending).rejects.toMatchObject({ code: 'cancelled', message: 'Loading was cancelled.' });
    expect(signal?.aborted).toBe(true);
    expect(a.disposed).toBe(false);
  });
});
