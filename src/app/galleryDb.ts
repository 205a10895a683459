// The gallery in IndexedDB: one object store keyed by id, PNG blobs stored as they are.
import type { GalleryEntry } from './galleryEntry';
import type { GalleryStorage } from './galleryStorage';

const DB_NAME = 'hart-web';
const STORE = 'gallery';

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** Why the database cannot be opened, in words for people (private windows often refuse it). */
function unavailable(cause: unknown): Error {
  const detail = cause instanceof Error || cause instanceof DOMException ? cause.message : String(cause ?? 'no reason given');
  return new Error(`this browser does not let the page use IndexedDB (${detail || 'no reason given'}), as some private windows do`, { cause });
}

async function open(factory: IDBFactory | undefined): Promise<IDBDatabase> {
  if (!factory) throw unavailable('there is no indexedDB');
  let req: IDBOpenDBRequest;
  try {
    req = factory.open(DB_NAME, 1);
  } catch (error) {
    throw unavailable(error);
  }
  req.onupgradeneeded = () => {
    if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE, { keyPath: 'id' });
  };
  try {
    return await request(req);
  } catch (error) {
    throw unavailable(error);
  }
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('The gallery write was aborted.'));
  });
}

/** `factory`: the page's `indexedDB` by default; missing (some browsers, private modes) is no crash: every call then fails in words. */
export function createIndexedDbGalleryStorage(factory: IDBFactory | undefined = (globalThis as { indexedDB?: IDBFactory }).indexedDB): GalleryStorage {
  let db: Promise<IDBDatabase> | undefined;
  const database = () => (db ??= open(factory));

  return {
    async list() {
      const tx = (await database()).transaction(STORE, 'readonly');
      const all = await request(tx.objectStore(STORE).getAll() as IDBRequest<GalleryEntry[]>);
      return all.sort((a, b) => b.createdAt - a.createdAt);
    },
    async put(entry) {
      // Strict: the write is on disk when the transaction completes, so an image the page calls
      // done survives a reload or a crash right after.
      const tx = (await database()).transaction(STORE, 'readwrite', { durability: 'strict' });
      tx.objectStore(STORE).put(entry);
      await done(tx);
    },
    async remove(id) {
      const tx = (await database()).transaction(STORE, 'readwrite');
      tx.objectStore(STORE).delete(id);
      await done(tx);
    },
  };
}
