// Finished images: encoded once as PNG with their provenance, kept in storage, newest first.
import { pngTextFor, type GalleryEntry } from './galleryEntry';
import type { AppDeps, GallerySlice, Slice } from './storeTypes';

function describe(action: string, error: unknown): { code: 'internal'; message: string } {
  const reason = error instanceof Error ? error.message : String(error);
  return { code: 'internal', message: `Could not ${action}: ${reason}` };
}

export function createGallerySlice(deps: AppDeps): Slice<GallerySlice> {
  return (set, get) => ({
    gallery: [],
    galleryUnavailable: false,

    async loadGallery() {
      try {
        set({ gallery: await deps.gallery.list(), galleryError: undefined, galleryUnavailable: false });
      } catch (error) {
        // Private windows may refuse storage: images still get made, they just do not outlive the page.
        const reason = error instanceof Error ? error.message : String(error);
        set({
          galleryUnavailable: true,
          galleryError: {
            code: 'internal',
            message: `The gallery cannot keep images in this browser: ${reason}. New images stay here until the page is closed; download the ones you want to keep.`,
          },
        });
      }
    },

    async keep(result, durationMs) {
      const createdAt = deps.clock();
      try {
        const png = await deps.encodePng(result.image, pngTextFor(result, createdAt));
        const entry: GalleryEntry = {
          id: deps.newId(),
          prompt: result.prompt,
          ...(result.negativePrompt !== undefined ? { negativePrompt: result.negativePrompt } : {}),
          ...(result.detailPrompt !== undefined ? { detailPrompt: result.detailPrompt, detailFrom: result.detailFrom } : {}),
          ...(result.variedFrom !== undefined ? { variedFrom: result.variedFrom } : {}),
          tokens: result.tokens,
          seed: result.seed,
          settings: result.settings,
          model: result.model,
          backend: result.backend,
          createdAt,
          durationMs,
          width: result.image.width,
          height: result.image.height,
          png: new Blob([png as Uint8Array<ArrayBuffer>], { type: 'image/png' }),
        };
        set({ gallery: [entry, ...get().gallery] });
        // Storage already said no: the image stays in the page, and the banner says so once.
        if (get().galleryUnavailable) return;
        await deps.gallery.put(entry);
      } catch (error) {
        set({ galleryError: describe('save the image in the gallery', error) });
      }
    },

    async deleteEntry(id) {
      set({ gallery: get().gallery.filter((entry) => entry.id !== id) });
      if (get().galleryUnavailable) return;
      try {
        await deps.gallery.remove(id);
      } catch (error) {
        set({ galleryError: describe('delete the image from the gallery', error) });
      }
    },

    async rerun(id) {
      const entry = get().gallery.find((e) => e.id === id);
      if (!entry) return;
      set({
        prompt: entry.prompt,
        negativePrompt: entry.negativePrompt ?? '',
        detailPrompt: entry.detailPrompt ?? '',
        detailFrom: entry.detailFrom ?? get().detailFrom,
        seed: entry.seed,
        randomSeed: false,
        settings: { ...entry.settings },
        count: 1,
      });
      await get().generate();
    },

    async varyEntry(id, fromScale) {
      const entry = get().gallery.find((e) => e.id === id);
      if (!entry?.tokens) return;
      set({
        varySource: {
          model: entry.model,
          tokens: entry.tokens,
          request: {
            prompt: entry.prompt,
            settings: { ...entry.settings },
            previews: true,
            ...(entry.negativePrompt !== undefined ? { negativePrompt: entry.negativePrompt } : {}),
            ...(entry.detailPrompt !== undefined ? { detailPrompt: entry.detailPrompt, detailFrom: entry.detailFrom } : {}),
          },
        },
      });
      await get().vary(fromScale);
    },
  });
}
