import { describe, expect, it } from 'vitest';
import { pageModelFromLocation } from '../../src/app/pageOptions';

const HREF = 'http://127.0.0.1:4173/?x=1';
const DEFAULT = '/models/hart-shapes/';

describe('the page model option', () => {
  it('opens the default model when the address names none', () => {
    expect(pageModelFromLocation('', HREF, DEFAULT)).toEqual({ url: 'http://127.0.0.1:4173/models/hart-shapes/', label: '/models/hart-shapes/' });
  });

  it('opens a package named by its manifest', () => {
    const model = pageModelFromLocation('?model=/models/other/manifest.json', HREF, DEFAULT);
    expect(model).toEqual({ url: 'http://127.0.0.1:4173/models/other/', label: '/models/other/' });
  });

  it('falls back to the default model with a message when ?model= is no URL', () => {
    const model = pageModelFromLocation('?model=http%3A%2F%2F%5B', HREF, DEFAULT);
    expect(model.url).toBe('http://127.0.0.1:4173/models/hart-shapes/');
    expect(model.error).toMatch(/"http:\/\/\[" is not a URL/);
  });

  it('refuses a ?model= that is not http(s), such as javascript:, and opens the default model', () => {
    const model = pageModelFromLocation('?model=javascript%3Aalert(1)', HREF, DEFAULT);
    expect(model.url).toBe('http://127.0.0.1:4173/models/hart-shapes/');
    expect(model.error).toMatch(/"javascript:alert\(1\)" is not an http\(s\) address/);
  });
});
