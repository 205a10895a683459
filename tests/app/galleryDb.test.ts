// The gallery's IndexedDB storage where the browser refuses IndexedDB (private windows, storage
// switched off): every call fails with a sentence naming the cause, never a crash at start-up.
import { describe, expect, it } from 'vitest';
import { createIndexedDbGalleryStorage } from '../../src/app/galleryDb';

/** An open request that fails the way a refusing browser answers: an error event. */
function refusingFactory(): IDBFactory {
  return {
    open() {
      const req = { error: new DOMException('The user denied permission to access the database.', 'InvalidStateError') } as unknown as IDBOpenDBRequest;
      setTimeout(() => req.onerror?.(new Event('error')), 0);
      return req;
    },
  } as unknown as IDBFactory;
}

describe('gallery storage without IndexedDB', () => {
  it('fails in words when there is no indexedDB, when open throws and when the open request errors', async () => {
    const throwing = {
      open() {
        throw new DOMException('The operation is insecure.', 'SecurityError');
      },
    } as unknown as IDBFactory;
    const expected = [
      [createIndexedDbGalleryStorage(undefined), /does not let the page use IndexedDB \(there is no indexedDB\)/],
      [createIndexedDbGalleryStorage(throwing), /does not let the page use IndexedDB \(The operation is insecure\.\)/],
      [createIndexedDbGalleryStorage(refusingFactory()), /does not let the page use IndexedDB \(The user denied permission/],
    ] as const;
    for (const [storage, message] of expected) {
      await expect(storage.list()).rejects.toThrow(message);
      await expect(storage.put({ id: 'a' } as never)).rejects.toThrow(message);
      await expect(storage.remove('a')).rejects.toThrow(message);
    }
  });

  it('does not throw when it is created where indexedDB is missing', () => {
    const g = globalThis as { indexedDB?: unknown };
    expect(g.indexedDB).toBeUndefined();
    expect(() => createIndexedDbGalleryStorage()).not.toThrow();
  });
});
