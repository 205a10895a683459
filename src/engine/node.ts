// The engine's second door, for Node only: reads a model package from a folder on disk. The CLI
// and tests import it beside index.ts; the browser build never does.
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Ort } from './backend';
import { BadPackageError, CheckpointError, LOADING_CANCELLED, throwIfCancelled } from './errors';
import type { Hasher, Sink } from './import/sink';
import type { Source } from './import/source';
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

/** Published files in a folder on disk, read by range through a file handle. */
export function createFsSource(folder: string): Source {
  const root = path.resolve(folder);
  const resolve = (file: string) => path.join(root, ...file.split('/').filter(Boolean));
  const source: Source = {
    location: root,
    describe: (file) => resolve(file),
    async size(file) {
      try {
        const info = await stat(resolve(file));
        if (!info.isFile()) throw new CheckpointError('is not a file', resolve(file));
        return info.size;
      } catch (error) {
        if (error instanceof CheckpointError) throw error;
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError('missing file', resolve(file));
        throw error;
      }
    },
    async exists(file) {
      try {
        return (await stat(resolve(file))).isFile();
      } catch {
        return false;
      }
    },
    async read(file, start, end, signal) {
      throwIfCancelled(signal, LOADING_CANCELLED);
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
        throw new RangeError(`${resolve(file)}: bad byte range [${start}, ${end})`);
      }
      let handle;
      try {
        handle = await open(resolve(file), 'r');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError('missing file', resolve(file));
        throw error;
      }
      try {
        const bytes = new Uint8Array(end - start);
        let done = 0;
        while (done < bytes.length) {
          // One read is capped at 2 GB: loop over larger ranges.
          const { bytesRead } = await handle.read(bytes, done, Math.min(bytes.length - done, 1 << 30), start + done);
          if (bytesRead === 0) throw new CheckpointError(`is shorter than expected (${start + done} < ${end} bytes)`, resolve(file));
          done += bytesRead;
        }
        return bytes;
      } finally {
        await handle.close();
      }
    },
    async list(dir) {
      try {
        const entries = await readdir(resolve(dir), { withFileTypes: true });
        return entries.filter((e) => e.isFile()).map((e) => e.name).sort();
      } catch {
        return [];
      }
    },
  };
  return source;
}

/**
 * An imported package's folder on disk: each file is written to `NAME.part` and renamed when
 * complete, so a cancelled import leaves only whole files (and no manifest.json).
 */
export function createFolderSink(folder: string): Sink {
  const root = path.resolve(folder);
  const resolve = (file: string) => path.join(root, ...file.split('/'));
  return {
    location: root,
    async create(file) {
      const target = resolve(file);
      const part = `${target}.part`;
      await mkdir(path.dirname(target), { recursive: true });
      const handle = await open(part, 'w');
      let closed = false;
      return {
        async write(chunk) {
          let done = 0;
          while (done < chunk.length) done += (await handle.write(chunk, done, chunk.length - done)).bytesWritten;
        },
        async close() {
          closed = true;
          await handle.close();
          await rename(part, target);
        },
        async abort() {
          if (!closed) await handle.close().catch(() => undefined);
          closed = true;
          await rm(part, { force: true });
        },
      };
    },
    async read(file) {
      const buffer = await readFile(resolve(file));
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    },
  };
}

/** Node's SHA-256 (OpenSSL), much faster than the engine's own for multi-gigabyte imports. */
export const nodeSha256Hasher = (): Hasher => {
  const hash = createHash('sha256');
  return { update: (bytes: Uint8Array) => hash.update(bytes), hex: () => hash.digest('hex') };
};
