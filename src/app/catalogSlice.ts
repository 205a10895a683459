// The models the app offers, read from the catalog (data, not code), and for a model that is not
// downloaded yet, whether this device can run it: asked of the worker, which knows the backend,
// the GPU adapter and the storage left.
import { parseCatalog } from '../engine/index';
import type { AppDeps, CatalogSlice, Slice } from './storeTypes';

export function createCatalogSlice(deps: AppDeps): Slice<CatalogSlice> {
  return (set, get) => ({
    catalog: [],
    catalogChecks: {},
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
  });
}
