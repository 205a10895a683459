// The page: one worker, one store, the default model loading as soon as the page opens.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { createEngineClient } from './app/engineClient';
import { createIndexedDbGalleryStorage } from './app/galleryDb';
import { backendFromSearch, modelUrlFromSearch, normalizeModelUrl } from './app/pageOptions';
import { createAppStore } from './app/store';
import { encodePng } from './engine/index';
import { App } from './ui/App';
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
  },
  backendFromSearch(location.search),
);

const modelUrl = normalizeModelUrl(modelUrlFromSearch(location.search, DEFAULT_MODEL), location.href);
void store.getState().loadGallery();
void store.getState().loadModel({ kind: 'url', url: modelUrl }, modelUrl.replace(location.origin, ''));
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
    <StoreProvider store={store}>
      <App />
    </StoreProvider>
  </StrictMode>,
);
