// The models the app offers, read from the catalog (data, not code), and for a model that is not
// downloaded yet, whether this device can run it: asked of the worker, which knows the backend,
// the GPU adapter and the storage left.
import { parseCatalog } from '../engine/index';
import type { AppFailure, ImportOutcome } from '../../workers/protocol';
import type { AppDeps, CatalogImport, CatalogSlice, Slice } from './storeTypes';

export function createCatalogSlice(deps: AppDeps): Slice<CatalogSlice> {
  return (set, get) => ({
    catalog: [],
    catalogChecks: {},
    catalogImports: {},
    async loadCatalog() {
      if (!deps.catalog) return;
      const { url } = deps.catalog;
      try {
        set({ catalog: parseCatalog(await deps.catalog.fetch(url), url), catalogError: undefined });
      } catch (error) {
        set({ catalogError: `The list of models could not be read: ${(error as Error).message}` });
      }
    },
    async checkCatalogEntry(id) {
      const entry = get().catalog.find((e) => e.id === id);
      if (!entry) return;
      const mark = (check: CatalogSlice['catalogChecks'][string]) => set({ catalogChecks: { ...get().catalogChecks, [id]: check } });
      mark({ status: 'checking' });
      try {
        mark({ status: 'done', result: await deps.client.checkNeeds(entry.needs, entry.diskBytes, { backend: get().backendChoice }) });
      } catch (error) {
        mark({ status: 'failed', message: (error as Error).message });
      }
    },
    async importCatalogEntry(id) {
      const entry = get().catalog.find((e) => e.id === id);
      if (!entry || entry.source.kind !== 'import') return;
      const source = entry.source;
      const mark = (state: CatalogImport) => set({ catalogImports: { ...get().catalogImports, [id]: state } });
      const current = () => get().catalogImports[id];
      mark({ status: 'checking' });
      // The device first: a model it cannot run is refused before any byte is downloaded.
      await get().checkCatalogEntry(id);
      const check = get().catalogChecks[id];
      if (current()?.status !== 'checking') return; // cancelled meanwhile
      if (check?.status !== 'done' || !check.result.ok) {
        mark({ status: 'refused' });
        return;
      }
      mark({ status: 'importing' });
      let outcome: ImportOutcome;
      try {
        const appBase = deps.appBase ?? new URL('./', (globalThis as { location?: { href: string } }).location?.href ?? 'http://localhost/').href;
        outcome = await deps.client.importModel({ id, source }, { appBase }, (progress) => {
          if (current()?.status === 'importing') mark({ status: 'importing', progress });
        });
      } catch (error) {
        if (current()?.status !== 'importing') return;
        const failure = error as AppFailure;
        mark(failure.code === 'cancelled' ? { status: 'cancelled' } : { status: 'failed', message: `${entry.name}: ${failure.message}` });
        return;
      }
      if (current()?.status !== 'importing') return;
      mark({ status: 'loading', outcome });
      void get().refreshCachedModels();
      await get().loadModel({ kind: 'url', url: outcome.url }, entry.name);
      mark({ status: 'done', outcome });
    },
    async cancelImport(id) {
      const state = get().catalogImports[id];
      if (state?.status === 'checking' || state?.status === 'importing') {
        set({ catalogImports: { ...get().catalogImports, [id]: { status: 'cancelled' } } });
        await deps.client.cancelLoad();
      } else if (state?.status === 'loading') await get().cancelLoad();
    },
  });
}
