// @vitest-environment jsdom
// What the page shows when the browser holds something back: storage that refuses the gallery,
// storage too full to keep a model for offline use. And text that looks like markup (a prompt or
// a model name) always shows as text.
import { act, cleanup, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderApp } from './renderApp';
import { createIndexedDbGalleryStorage } from '../../src/app/galleryDb';
import { createMemoryGalleryStorage } from '../../src/app/galleryStorage';
import type { GalleryEntry } from '../../src/app/galleryEntry';
import { installCanvasStub } from './canvasStub';
import { loaded } from '../app/storeHarness';
import { FAKE_DEFAULTS, fakeInfo } from '../workers/fakeEngine';

beforeAll(installCanvasStub);
afterEach(cleanup);

async function generate(prompt: string) {
  fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: prompt } });
  fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
  await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done in/));
}

describe('browser storage that says no', () => {
  it('without IndexedDB (a private window) the gallery says it cannot keep images, and generating still works', async () => {
    const refusing = {
      open() {
        throw new DOMException('The operation is insecure.', 'SecurityError');
      },
    } as unknown as IDBFactory;
    const harness = await loaded({ galleryStorage: createIndexedDbGalleryStorage(refusing) });
    renderApp(harness);
    await act(() => harness.store.getState().loadGallery());
    const alert = screen.getByRole('alert');
    expect(alert.textContent).toMatch(/Gallery\. The gallery cannot keep images in this browser: this browser does not let the page use IndexedDB \(The operation is insecure\.\).*until the page is closed/);
    expect(screen.getByText(/not kept: this browser refuses storage/)).toBeTruthy();
    await generate('a red circle');
    await generate('a blue square on green');
    expect(within(screen.getByRole('list', { name: 'Gallery' })).getAllByRole('listitem')).toHaveLength(2);
    // One sentence about storage, not one more per image.
    expect(screen.getByRole('alert').querySelectorAll('p')).toHaveLength(1);
    expect(harness.store.getState().runError).toBeUndefined();
  });

  it('storage too full to keep the model for offline use: the banner names the file and sizes, the model works', async () => {
    const storageWarning = "The browser's storage is full (this site uses 1.9 GB of the 2.0 GB the browser allows it): transformer.onnx (120.0 MB) could not be kept for offline use.";
    const harness = await loaded({ info: fakeInfo({ storageWarning }) });
    renderApp(harness);
    expect(screen.getByRole('alert').textContent).toBe(`Not kept for offline use. ${storageWarning}`);
    await generate('a red circle');
  });
});

describe('text that looks like markup', () => {
  const MARKUP = '<img src=x onerror="document.title=\'pwned\'">';

  it('a prompt and a model name with an <img onerror> tag show literally in the gallery and the model panel', async () => {
    const kept: GalleryEntry = {
      id: 'old',
      prompt: `${MARKUP} from storage`,
      seed: 1,
      settings: FAKE_DEFAULTS,
      model: MARKUP,
      backend: 'wasm',
      createdAt: 1,
      durationMs: 10,
      width: 8,
      height: 8,
      png: new Blob([new Uint8Array([137, 80, 78, 71])], { type: 'image/png' }),
    };
    const harness = await loaded({ info: fakeInfo({ name: MARKUP, description: MARKUP }), galleryStorage: createMemoryGalleryStorage([kept]) });
    document.title = 'HART Web';
    const { container } = renderApp(harness);
    await act(() => harness.store.getState().loadGallery());
    await generate(`${MARKUP} a red circle`);
    const gallery = screen.getByRole('list', { name: 'Gallery' });
    expect(within(gallery).getByText(`${MARKUP} a red circle`)).toBeTruthy();
    expect(within(gallery).getByText(`${MARKUP} from storage`)).toBeTruthy();
    expect(container.querySelector('.model-name')?.textContent).toBe(MARKUP);
    expect(within(gallery).getAllByText((_, element) => element?.tagName === 'P' && element.textContent!.startsWith(`${MARKUP} · WASM`))).toHaveLength(2);
    // No element was made from the text: every <img> on the page is one the app draws itself.
    expect([...container.querySelectorAll('img')].filter((img) => img.getAttribute('src') === 'x' || img.hasAttribute('onerror'))).toEqual([]);
    expect(container.querySelector('[onerror]')).toBeNull();
    expect(document.title).toBe('HART Web');
  });
});
