// Where kept images live. The page uses IndexedDB (galleryDb.ts) so the gallery survives a
// reload; tests use the in-memory store below.
import type { GalleryEntry } from './galleryEntry';

export interface GalleryStorage {
  /** Newest first. */
  list(): Promise<GalleryEntry[]>;
  put(entry: GalleryEntry): Promise<void>;
  remove(id: string): Promise<void>;
}

export function createMemoryGalleryStorage(initial: GalleryEntry[] = []): GalleryStorage {
  const entries = new Map(initial.map((entry) => [entry.id, entry]));
  return {
    async list() {
      return [...entries.values()].sort((a, b) => b.createdAt - a.createdAt);
    },
    async put(entry) {
      entries.set(entry.id, entry);
    },
    async remove(id) {
      entries.delete(id);
    },
  };
}
