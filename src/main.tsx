// The page: one worker, one store, the default model loading as soon as the page opens.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { createEngineClient } from './app/engineClient';
import { createIndexedDbGalleryStorage } from './app/galleryDb';
import { backendFromSearch, pageModelFromLocation } from './app/pageOptions';
import { createAppStore } from './app/store';
import { encodePng } from './engine/index';
import { App } from './ui/App';
import { ErrorBoundary } from './ui/ErrorBoundary';
import { StoreProvider } from './ui/storeContext';
import { registerOfflineCache } from './ui/offline';
import './ui/app.css';

const DEFAULT_MODEL = `${import.meta.env.BASE_URL}models/hart-shapes/`;

const client = createEngineClient(
  () => new Worker(new URL('../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'hart-engine' }),
);

const store = createAppStore(
  {
    client,
    gallery: createIndexedDbGalleryStorage(),
    encodePng,
    now: () => performance.now(),
    clock: () => Date.now(),
    randomSeed: () => crypto.getRandomValues(new Uint32Array(1))[0] >>> 1,
    newId: () => crypto.randomUUID(),
    appBase: new URL(import.meta.env.BASE_URL, location.href).href,
    catalog: {
      url: new URL(`${import.meta.env.BASE_URL}models/catalog.json`, location.href).href,
      async fetch(url) {
        const response = await fetch(url);
        if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
        return response.json();
      },
    },
  },
  backendFromSearch(location.search),
);

// No option of the address may stop the page: one it cannot use is reported in the error banner.
const pageModel = pageModelFromLocation(location.search, location.href, DEFAULT_MODEL);
if (pageModel.error) store.setState({ pageError: { code: 'bad-input', message: pageModel.error } });
void store.getState().loadGallery();
void store.getState().loadModel({ kind: 'url', url: pageModel.url }, pageModel.label);
registerOfflineCache(
  new Promise<void>((resolve) => {
    const unsubscribe = store.subscribe((state) => {
      if (state.modelStatus !== 'ready') return;
      unsubscribe();
      resolve();
    });
  }),
);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <ErrorBoundary defaultHref={location.pathname}>
      <StoreProvider store={store}>
        <App />
      </StoreProvider>
    </ErrorBoundary>
  </StrictMode>,
);
