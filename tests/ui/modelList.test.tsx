// @vitest-environment jsdom
// The model panel's list of models (the catalog): each with its sizes and needs, a package that
// loads, and a model to import that is checked against the device before anything is fetched.
import { readFileSync } from 'node:fs';
import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { ModelList } from '../../src/ui/ModelList';
import { StoreProvider } from '../../src/ui/storeContext';
import { createHarness, type Harness } from '../app/storeHarness';
import { CancelledError, FetchFailedError } from '../../src/engine/errors';

afterEach(cleanup);

const catalog = () => JSON.parse(readFileSync('public/models/catalog.json', 'utf8'));

/** A catalog with one small model to import, which runs on WASM. */
const standInCatalog = () => ({
  format: 'hart-web-catalog',
  version: 1,
  models: [{
    id: 'stand-in', name: 'Stand-in HART', description: 'the tests\' stand-in', imageSize: 64,
    source: { kind: 'import', hart: 'http://hub/owner/hart', qwen: 'http://hub/owner/qwen', skeleton: 'http://hub/skeleton/' },
    downloadBytes: 1000, diskBytes: 1000, needs: { webgpu: false, shaderF16: false, gpuBufferBytes: 0 },
  }],
});

async function renderList(harness: Harness) {
  render(
    <StoreProvider store={harness.store}>
      <ModelList />
    </StoreProvider>,
  );
  await waitFor(() => expect(harness.store.getState().catalog.length + (harness.store.getState().catalogError ? 1 : 0)).toBeGreaterThan(0));
}

describe('the model list', () => {
  it('shows every model of the catalog with what it downloads and needs', async () => {
    await renderList(createHarness({ catalog: catalog() }));
    expect(screen.getByText('HART shapes · 128 px')).toBeTruthy();
    expect(screen.getByText('23.7 MB to download · needs WebGPU or WASM')).toBeTruthy();
    expect(screen.getByText('HART 0.7B · 1024 px')).toBeTruthy();
    expect(screen.getByText('about 5.85 GB to download, 5.45 GB kept · needs WebGPU with shader-f16, a GPU buffer of 640.0 MB')).toBeTruthy();
  });

  it('loads a package model from its address, resolved against the catalog', async () => {
    const harness = createHarness({ catalog: catalog() });
    await renderList(harness);
    fireEvent.click(screen.getByRole('button', { name: 'Load HART shapes · 128 px' }));
    await waitFor(() => expect(harness.store.getState().modelStatus).toBe('ready'));
    expect(harness.store.getState().modelSource).toEqual({ kind: 'url', url: 'http://localhost/models/hart-shapes/' });
  });

  it('says why this device cannot run a model to import, before any download', async () => {
    const harness = createHarness({ catalog: catalog() });
    await renderList(harness);
    fireEvent.click(screen.getByRole('button', { name: 'Check this device for HART 0.7B · 1024 px' }));
    await screen.findByText('This device cannot run it:');
    expect(screen.getByText('The model needs WebGPU; this browser runs it on WASM, which cannot hold it.')).toBeTruthy();
    expect(harness.loads).toBe(0);
  });

  it('refuses to import a model this device cannot run, with the reasons, before any download', async () => {
    let imports = 0;
    const harness = createHarness({ catalog: catalog(), importModel: async () => { imports++; throw new Error('not reached'); } });
    await renderList(harness);
    fireEvent.click(screen.getByRole('button', { name: 'Import HART 0.7B · 1024 px' }));
    await screen.findByText('This device cannot run it:');
    expect(screen.getByText('The model needs WebGPU; this browser runs it on WASM, which cannot hold it.')).toBeTruthy();
    expect(imports).toBe(0);
    expect(harness.loads).toBe(0);
  });

  it('imports a model with its progress, then loads it from the address the import gave', async () => {
    const list = standInCatalog();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const requests: unknown[] = [];
    const harness = createHarness({
      catalog: list,
      importModel: async (request, { appBase, onProgress }) => {
        requests.push({ request, appBase });
        onProgress?.({ phase: 'download', file: 'transformer.onnx.data', index: 2, count: 9, done: 1 << 20, total: 4 << 20, bytesPerSecond: 1 << 20, secondsLeft: 3 });
        await held;
        return { url: 'http://localhost/imported/stand-in/', files: 9, kept: 0, bytesRead: 100, bytesWritten: 5 << 20 };
      },
    });
    await renderList(harness);
    fireEvent.click(screen.getByRole('button', { name: 'Import Stand-in HART' }));
    await screen.findByText('transformer.onnx.data (3 of 9) · 1.0 MB of 4.0 MB · 1.0 MB/s · 3 s left');
    expect(screen.getByText('Download and convert')).toBeTruthy();
    release();
    await screen.findByText(/^Imported Stand-in HART: 9 files, 5.0 MB written in [\d.]+ s\.$/);
    expect(requests).toEqual([{ request: { id: 'stand-in', source: list.models[0].source }, appBase: 'http://localhost/' }]);
    expect(harness.store.getState().modelSource).toEqual({ kind: 'url', url: 'http://localhost/imported/stand-in/' });
    expect(harness.store.getState().modelLabel).toBe('Stand-in HART');
  });

  it('cancels an import under way; nothing is loaded', async () => {
    let aborted = false;
    const harness = createHarness({
      catalog: standInCatalog(),
      importModel: async (_request, { onProgress, signal }) => {
        onProgress?.({ phase: 'download', file: 'condition.onnx.data', index: 0, count: 9, done: 0, total: 10 });
        await new Promise<void>((_, reject) => signal.addEventListener('abort', () => {
          aborted = true;
          reject(new CancelledError('Loading was cancelled.'));
        }));
        throw new Error('not reached');
      },
    });
    await renderList(harness);
    fireEvent.click(screen.getByRole('button', { name: 'Import Stand-in HART' }));
    fireEvent.click(await screen.findByRole('button', { name: 'Cancel import of Stand-in HART' }));
    await screen.findByText('The import was cancelled; the files it finished are kept for the next one.');
    await waitFor(() => expect(aborted).toBe(true));
    expect(harness.loads).toBe(0);
  });

  it('names the file and URL when an import fails, and the loaded model stays', async () => {
    const harness = createHarness({
      catalog: standInCatalog(),
      importModel: async () => {
        throw new FetchFailedError('llm/ema_model.bin', 'the server answered 500 Internal Server Error for http://hub/x/resolve/main/llm/ema_model.bin; gave up after 3 tries');
      },
    });
    await harness.store.getState().loadModel({ kind: 'url', url: 'http://localhost/models/hart-shapes/' }, 'shapes');
    await renderList(harness);
    fireEvent.click(screen.getByRole('button', { name: 'Import Stand-in HART' }));
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toBe('Import failed: Stand-in HART: llm/ema_model.bin: the server answered 500 Internal Server Error for http://hub/x/resolve/main/llm/ema_model.bin; gave up after 3 tries');
    expect(harness.store.getState().modelStatus).toBe('ready');
    expect(harness.store.getState().modelLabel).toBe('shapes');
  });

  it('says when the list cannot be read, and the rest of the panel stays', async () => {
    await renderList(createHarness({ catalog: new Error('offline') }));
    expect(screen.getByText('The list of models could not be read: offline')).toBeTruthy();
  });
});
