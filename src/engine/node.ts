// The engine's second door, for Node only: reads a model package from a folder on disk. The CLI
// and tests import it beside index.ts; the browser build never does.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Ort } from './backend';
import { BadPackageError, LOADING_CANCELLED, throwIfCancelled } from './errors';
import type { PackageIO } from './readers';

/** onnxruntime in Node: onnxruntime-node ('cpu'), or onnxruntime-web's Node build ('wasm'). */
export async function importNodeOrt(backend: 'cpu' | 'wasm'): Promise<Ort> {
  // onnxruntime-web resolves to its Node build here, which runs the wasm backend.
  const module = backend === 'cpu' ? await import('onnxruntime-node') : await import('onnxruntime-web');
  return ((module as { default?: Ort }).default ?? module) as Ort;
}

export function createFsIO(folder: string): PackageIO {
  const root = path.resolve(folder);
  const resolve = (file: string) => path.join(root, ...file.split('/'));
  return {
    location: root,
    async read(file, options = {}) {
      throwIfCancelled(options.signal, LOADING_CANCELLED);
      let buffer: Buffer;
      try {
        buffer = await readFile(resolve(file));
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? `is missing from ${root}` : `could not be read (${(error as Error).message})`;
        throw new BadPackageError(why, file, { cause: error });
      }
      // A Buffer may view a shared pool: copy into an ArrayBuffer of its own.
      const bytes = new Uint8Array(buffer.length);
      bytes.set(buffer);
      options.onProgress?.(bytes.length, bytes.length);
      return bytes;
    },
  };
}
