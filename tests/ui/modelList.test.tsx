// @vitest-environment jsdom
// The model panel's list of models (the catalog): each with its sizes and needs, a package that
// loads, and a model to import that is checked against the device before anything is fetched.
import { readFileSync } from 'node:fs';
import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { ModelList } from '../../src/ui/ModelList';
import { StoreProvider } from '../../src/ui/storeContext';
import { createHarness, type Harness } from '../app/storeHarness';

afterEach(cleanup);

const catalog = () => JSON.parse(readFileSync('public/models/catalog.json', 'utf8'));

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

  it('says when the list cannot be read, and the rest of the panel stays', async () => {
    await renderList(createHarness({ catalog: new Error('offline') }));
    expect(screen.getByText('The list of models could not be read: offline')).toBeTruthy();
  });
});
