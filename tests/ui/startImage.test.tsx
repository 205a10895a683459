// @vitest-environment jsdom
// Image to image in the page: pick or drop an image, see it as the model will, choose the scale.
import { cleanup, fireEvent, screen, waitFor } from '@testing-library/react';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderApp } from './renderApp';
import { installCanvasStub, lastDrawn } from './canvasStub';
import { loaded } from '../app/storeHarness';
import { fakeInfo } from '../workers/fakeEngine';

/** jsdom decodes no images: a "decoded" file is 6×4 pixels of one grey, unless its name says broken. */
beforeAll(() => {
  installCanvasStub();
  const stubbed = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (this: HTMLCanvasElement, ...args: unknown[]) {
    const context = (stubbed as unknown as (...a: unknown[]) => Record<string, unknown>).apply(this, args);
    return {
      ...context,
      drawImage(source: unknown) {
        if (source instanceof HTMLCanvasElement) (context.drawImage as (s: unknown) => void)(source);
      },
      getImageData: (_x: number, _y: number, width: number, height: number) => ({ width, height, data: new Uint8ClampedArray(width * height * 4).fill(200) }),
    };
  } as unknown as typeof HTMLCanvasElement.prototype.getContext;
  (globalThis as { createImageBitmap?: unknown }).createImageBitmap = async (file: File) => {
    if (file.name.startsWith('broken')) throw new Error('decode failed');
    return { width: 6, height: 4, close() {} };
  };
});
afterEach(cleanup);

const png = (name: string) => new File([new Uint8Array([137, 80, 78, 71])], name, { type: 'image/png' });

describe('start from an image', () => {
  it('a picked image is shown as the model sees it, sent with its scale, kept out of a vary, and cleared', async () => {
    const harness = await loaded();
    renderApp(harness);
    const button = screen.getByRole('button', { name: 'Start from an image' });
    expect(button.textContent).toBe('Use an image…');
    fireEvent.change(screen.getByTestId('start-image-file'), { target: { files: [png('wide.png')] } });
    await screen.findByText('wide.png (6×4), centre-cropped and resized to 8 px.');
    expect(lastDrawn(screen.getByRole('img', { name: 'Start image wide.png' }))).toMatchObject({ width: 8, height: 8 });

    const fromScale = screen.getByRole('spinbutton', { name: 'From scale' }) as HTMLInputElement;
    expect(fromScale.max).toBe('4');
    fireEvent.change(fromScale, { target: { value: '9' } });
    expect(fromScale.value).toBe('4');
    fireEvent.change(fromScale, { target: { value: '2' } });
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    expect(harness.fake.requests[0]).toMatchObject({ prompt: 'a red circle', fromScale: 2, initImage: { width: 6, height: 4 } });
    expect(harness.fake.requests[0].initImage!.data).toHaveLength(6 * 4 * 4);

    // A vary of that image keeps its token maps, not the start image.
    fireEvent.click(screen.getByRole('button', { name: 'Vary from scale 2' }));
    await waitFor(() => expect(harness.fake.requests).toHaveLength(2));
    expect(harness.fake.requests[1].vary).toBeDefined();
    expect(harness.fake.requests[1]).not.toHaveProperty('initImage');
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));

    fireEvent.click(screen.getByRole('button', { name: 'Clear image' }));
    expect(screen.queryByRole('spinbutton', { name: 'From scale' })).toBeNull();
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(harness.fake.requests).toHaveLength(3));
    expect(harness.fake.requests[2]).not.toHaveProperty('initImage');
    expect(harness.fake.requests[2]).not.toHaveProperty('fromScale');
  });

  it('an image dropped on the canvas is taken; a file that is no image says so', async () => {
    const harness = await loaded();
    renderApp(harness);
    const target = screen.getByTestId('canvas-drop');
    fireEvent.drop(target, { dataTransfer: { files: [png('dropped.png')], types: ['Files'] } });
    await screen.findByText(/^dropped\.png \(6×4\), centre-cropped/);
    expect(harness.store.getState().initImage?.name).toBe('dropped.png');
    fireEvent.drop(target, { dataTransfer: { files: [png('broken.png')], types: ['Files'] } });
    expect((await screen.findByRole('alert')).textContent).toBe('broken.png could not be read: it is not an image this browser can decode.');
  });

  it('says when the model has no encoder', async () => {
    const harness = await loaded({ info: fakeInfo({ imageToImage: false }) });
    renderApp(harness);
    fireEvent.change(screen.getByTestId('start-image-file'), { target: { files: [png('a.png')] } });
    await screen.findByText(/This model has no encoder, so it cannot start from an image\./);
  });
});
