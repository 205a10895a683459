import { describe, expect, it } from 'vitest';
import { relay } from '../../workers/relay';

describe('relay (worker → page callbacks)', () => {
  it('returns the result only after the page has handled every event', async () => {
    const handled: number[] = [];
    // A page that takes a while per event, as a comlink round trip does.
    const onEvent = (n: number) => new Promise<void>((resolve) => setTimeout(() => (handled.push(n), resolve()), 5 - n));
    const result = await relay(onEvent as unknown as (n: number) => void, async (forward) => {
      for (let n = 0; n < 4; n++) forward?.(n);
      return 'image';
    });
    expect(result).toBe('image');
    expect(handled.sort()).toEqual([0, 1, 2, 3]);
  });

  it('also drains events before passing a failure on', async () => {
    const handled: string[] = [];
    const onEvent = (e: string) => new Promise<void>((resolve) => setTimeout(() => (handled.push(e), resolve()), 3));
    const failure = await relay(onEvent as unknown as (e: string) => void, async (forward) => {
      forward?.('scale');
      throw { code: 'cancelled', message: 'Generation was cancelled.' };
    }).catch((e: unknown) => e);
    expect(failure).toEqual({ code: 'cancelled', message: 'Generation was cancelled.' });
    expect(handled).toEqual(['scale']);
  });

  it('works without a callback', async () => {
    expect(await relay(undefined, async (forward) => (forward === undefined ? 'none' : 'some'))).toBe('none');
  });
});
