// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CachedModel, ModelCache, StorageEstimate } from '../../src/app/modelCache';
import { App } from '../../src/ui/App';
import { StoreProvider } from '../../src/ui/storeContext';
import { installCanvasStub } from './canvasStub';
import { createHarness, type Harness } from '../app/storeHarness';

beforeAll(installCanvasStub);
afterEach(cleanup);

const MB = 1024 * 1024;
const FAKE_URL = 'http://localhost/models/fake/';

/** An in-memory Cache Storage of model packages, recording what the store asked of it. */
function fakeCache(models: CachedModel[], options: { persist?: boolean; estimate?: StorageEstimate } = {}) {
  const stored = new Map(models.map((m) => [m.baseUrl, m]));
  const cache = {
    list: vi.fn(async () => [...stored.values()].map((m) => ({ ...m }))),
    delete: vi.fn(async (baseUrl: string) => {
      const bytes = stored.get(baseUrl)?.bytes ?? 0;
      stored.delete(baseUrl);
      return bytes;
    }),
    persist: vi.fn(async () => options.persist),
    estimate: vi.fn(async () => options.estimate),
  } satisfies ModelCache;
  return cache;
}

const shapes: CachedModel = { baseUrl: 'http://localhost/models/hart-shapes-128/', name: 'hart-shapes-128', files: 12, bytes: 36.5 * MB, offline: true };
const big: CachedModel = { baseUrl: 'http://localhost/models/hart-1024/', name: 'hart-1024', files: 20, bytes: 2.5 * 1024 * MB, offline: false };
const fake: CachedModel = { baseUrl: FAKE_URL, name: 'fake-model', files: 9, bytes: 3 * MB, offline: true };

function renderApp(harness: Harness) {
  return render(
    <StoreProvider store={harness.store}>
      <App />
    </StoreProvider>,
  );
}

async function load(harness: Harness) {
  await harness.store.getState().loadModel({ kind: 'url', url: FAKE_URL }, 'fake');
}

function downloaded() {
  return within(screen.getByRole('group', { name: 'Downloaded models' }));
}

describe('downloaded models in the model panel', () => {
  it('lists each cached package with its size, offline state and the storage used', async () => {
    const cache = fakeCache([big, shapes], { estimate: { usage: 2.6 * 1024 * MB, quota: 100 * 1024 * MB } });
    renderApp(createHarness({ cache }));

    const items = await waitFor(() => {
      const found = downloaded().getAllByRole('listitem');
      expect(found).toHaveLength(2);
      return found;
    });
    expect(items[0].textContent).toContain('hart-1024');
    expect(items[0].textContent).toContain('2.50 GB · partly downloaded');
    expect(items[1].textContent).toContain('hart-shapes-128');
    expect(items[1].textContent).toContain('36.5 MB · available offline');
    expect(downloaded().getByText('This site uses 2.60 GB of 100.00 GB available.')).toBeTruthy();
    expect(downloaded().getByRole('button', { name: 'Delete hart-shapes-128 from this browser' })).toBeTruthy();
    expect(downloaded().getByRole('button', { name: 'Delete hart-1024 from this browser' })).toBeTruthy();
  });

  it('says so when nothing is stored, and shows no storage line it does not know', async () => {
    const cache = fakeCache([]);
    renderApp(createHarness({ cache }));
    await waitFor(() => expect(downloaded().getByText('No models are stored in this browser.')).toBeTruthy());
    expect(downloaded().queryByText(/This site uses/)).toBeNull();
    expect(downloaded().queryByRole('listitem')).toBeNull();
  });

  it('Delete removes that package by its folder URL and lists again', async () => {
    const cache = fakeCache([big, shapes]);
    renderApp(createHarness({ cache }));
    const button = await waitFor(() => downloaded().getByRole('button', { name: 'Delete hart-shapes-128 from this browser' }));
    const listsBefore = cache.list.mock.calls.length;

    fireEvent.click(button);

    await waitFor(() => expect(downloaded().getAllByRole('listitem')).toHaveLength(1));
    expect(cache.delete).toHaveBeenCalledTimes(1);
    expect(cache.delete).toHaveBeenCalledWith('http://localhost/models/hart-shapes-128/');
    expect(cache.list.mock.calls.length).toBe(listsBefore + 1);
    expect(downloaded().getByRole('listitem').textContent).toContain('hart-1024');
    expect(downloaded().getByText('Deleted hart-shapes-128 (36.5 MB freed).')).toBeTruthy();
  });

  it('deleting the loaded model keeps it loaded for this visit and says so', async () => {
    const cache = fakeCache([fake, shapes]);
    const harness = createHarness({ cache });
    await load(harness);
    renderApp(harness);
    const item = await waitFor(() => downloaded().getByText('fake-model').closest('li')!);
    expect(item.textContent).toContain('loaded now');

    fireEvent.click(within(item as HTMLElement).getByRole('button', { name: 'Delete fake-model from this browser' }));

    await waitFor(() => expect(downloaded().getByText(/It stays loaded for this visit/)).toBeTruthy());
    expect(cache.delete).toHaveBeenCalledWith(FAKE_URL);
    expect(harness.store.getState().modelStatus).toBe('ready');
    expect(harness.store.getState().cachedModels.map((m) => m.baseUrl)).toEqual([shapes.baseUrl]);
    // Another model's delete does not claim to be the loaded one.
    fireEvent.click(downloaded().getByRole('button', { name: 'Delete hart-shapes-128 from this browser' }));
    await waitFor(() => expect(downloaded().getByText('Deleted hart-shapes-128 (36.5 MB freed).')).toBeTruthy());
  });

  it('a failed delete is shown and the list stays', async () => {
    const cache = fakeCache([shapes]);
    cache.delete.mockRejectedValueOnce(new Error('quota exceeded'));
    renderApp(createHarness({ cache }));
    fireEvent.click(await waitFor(() => downloaded().getByRole('button', { name: 'Delete hart-shapes-128 from this browser' })));
    await waitFor(() => expect(downloaded().getByText('hart-shapes-128 could not be deleted: quota exceeded')).toBeTruthy());
    expect(downloaded().getAllByRole('listitem')).toHaveLength(1);
  });
});

describe('persistent storage', () => {
  it('is asked for once, only after a model has loaded, and the model just downloaded is listed', async () => {
    const cache = fakeCache([], { persist: true });
    const harness = createHarness({ cache });
    await waitFor(() => expect(harness.store.getState().cacheListed).toBe(true));
    expect(cache.persist).not.toHaveBeenCalled();
    expect(harness.store.getState().storagePersistent).toBeUndefined();

    // The load itself is what puts the package in the cache.
    cache.list.mockImplementation(async () => [{ ...fake }]);
    await load(harness);
    await waitFor(() => expect(harness.store.getState().storagePersistent).toBe(true));
    expect(cache.persist).toHaveBeenCalledTimes(1);
    await waitFor(() => expect(harness.store.getState().cachedModels.map((m) => m.name)).toEqual(['fake-model']));

    await load(harness);
    await waitFor(() => expect(harness.store.getState().modelStatus).toBe('ready'));
    expect(cache.persist).toHaveBeenCalledTimes(1);

    renderApp(harness);
    expect(downloaded().getByText('Storage is persistent.')).toBeTruthy();
  });

  it('a declined or unavailable request shows nothing', async () => {
    for (const answer of [false, undefined]) {
      const cache = fakeCache([shapes], { persist: answer });
      const harness = createHarness({ cache });
      await load(harness);
      await waitFor(() => expect(cache.persist).toHaveBeenCalledTimes(1));
      renderApp(harness);
      await waitFor(() => expect(downloaded().getAllByRole('listitem')).toHaveLength(1));
      expect(screen.queryByText(/Storage is persistent/)).toBeNull();
      expect(harness.store.getState().storagePersistent).toBeUndefined();
      cleanup();
    }
  });

  it('a load that fails does not ask', async () => {
    const cache = fakeCache([], { persist: true });
    const harness = createHarness({ cache, failLoad: { code: 'fetch-failed', message: 'offline' } });
    await load(harness);
    expect(harness.store.getState().modelStatus).toBe('error');
    await waitFor(() => expect(harness.store.getState().cacheListed).toBe(true));
    expect(cache.persist).not.toHaveBeenCalled();
  });

  it('Open loads a downloaded model; a failed one leaves the loaded model and Generate usable', async () => {
    const cache = fakeCache([big, shapes, fake]);
    const harness = createHarness({ cache });
    await load(harness);
    const load_ = harness.client.load;
    harness.client.load = async (source, options, onProgress) => {
      if (source.kind === 'url' && source.url === big.baseUrl) throw { code: 'fetch-failed', message: 'manifest.json: HTTP 404 Not Found' };
      return load_(source, options, onProgress);
    };
    renderApp(harness);
    await waitFor(() => expect(downloaded().getAllByRole('listitem')).toHaveLength(3));
    for (const name of ['hart-1024', 'hart-shapes-128', 'fake-model']) {
      expect(downloaded().getByRole('button', { name: `Open ${name}` })).toBeTruthy();
    }

    fireEvent.click(downloaded().getByRole('button', { name: 'Open hart-1024' }));
    await waitFor(() => expect(screen.getByRole('alert').textContent).toContain('/models/hart-1024/: manifest.json: HTTP 404 Not Found'));
    expect(harness.store.getState().modelStatus).toBe('ready');
    screen.getByRole('textbox', { name: 'Prompt' });
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    expect((screen.getByRole('button', { name: 'Generate' }) as HTMLButtonElement).disabled).toBe(false);

    fireEvent.click(downloaded().getByRole('button', { name: 'Open hart-shapes-128' }));
    await waitFor(() => expect(harness.store.getState().modelSource).toEqual({ kind: 'url', url: shapes.baseUrl }));
    expect(harness.store.getState().modelStatus).toBe('ready');
    expect(harness.store.getState().modelError).toBeUndefined();
  });

  it('the Model URL box takes a relative path and refuses javascript: in words, keeping the model', async () => {
    const harness = createHarness({ cache: fakeCache([]) });
    await load(harness);
    renderApp(harness);
    const box = screen.getByRole('textbox', { name: 'Model URL' });
    fireEvent.change(box, { target: { value: 'javascript:alert(1)' } });
    fireEvent.click(screen.getByRole('button', { name: 'Load' }));
    await waitFor(() => expect(screen.getByRole('alert').textContent).toMatch(/not an http\(s\) address/));
    expect(harness.loads).toBe(1);
    expect(harness.store.getState().modelStatus).toBe('ready');

    fireEvent.change(box, { target: { value: '/models/hart-shapes/' } });
    fireEvent.click(screen.getByRole('button', { name: 'Load' }));
    await waitFor(() => expect(harness.loads).toBe(2));
    await waitFor(() => expect(harness.store.getState().modelSource).toEqual({ kind: 'url', url: new URL('/models/hart-shapes/', window.location.href).href }));
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('"Cancel loading" in the model panel stops a load and keeps the loaded model', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const harness = createHarness({ cache: fakeCache([]), holdSource: (source) => (source.kind === 'url' && source.url.includes('slow') ? held : undefined) });
    await load(harness);
    renderApp(harness);
    fireEvent.change(screen.getByRole('textbox', { name: 'Model URL' }), { target: { value: '/models/slow/' } });
    fireEvent.click(screen.getByRole('button', { name: 'Load' }));
    const cancel = await screen.findByRole('button', { name: 'Cancel loading' });
    fireEvent.click(cancel);
    await waitFor(() => expect(screen.queryByRole('button', { name: 'Cancel loading' })).toBeNull());
    expect(harness.store.getState().modelStatus).toBe('ready');
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    expect((screen.getByRole('button', { name: 'Generate' }) as HTMLButtonElement).disabled).toBe(false);
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(harness.store.getState().modelSource).toEqual({ kind: 'url', url: FAKE_URL });
  });
});
