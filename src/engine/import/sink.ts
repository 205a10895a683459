// Where an imported package goes: files written front to back, each visible only once it is
// complete (a cancelled or failed import leaves no half-written file), the manifest last.
// Node writes a folder on disk (node.ts); a browser keeps them in memory or in its cache.
import { Sha256 } from './sha256';

export interface SinkFile {
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the file visible under its name; `sha256` is the hash of what was written. */
  close(written?: { bytes: number; sha256: string }): Promise<void>;
  /** Forgets what was written. */
  abort(): Promise<void>;
}

export interface Sink {
  readonly location: string;
  /** `bytes`: the size the file will have, when known. */
  create(path: string, bytes?: number): Promise<SinkFile>;
  /** A file already closed (the preview fit reads the decoder back). */
  read(path: string): Promise<Uint8Array>;
  /**
   * A file a previous import left complete (closed with its hash): its size and sha256, so a
   * retried import need not write it again; undefined when there is none. Sinks that cannot
   * tell leave it out, and every file is written.
   */
  complete?(path: string): Promise<{ bytes: number; sha256: string } | undefined>;
}

/** An incremental hash; the default is the TypeScript SHA-256, Node passes its own (node.ts). */
export interface Hasher {
  update(bytes: Uint8Array): unknown;
  hex(): string;
}

export const sha256Hasher = (): Hasher => new Sha256();

/** Files kept in memory, by path: for tests, and for a browser that caches them itself. */
export function createMemorySink(files = new Map<string, Uint8Array>(), location = 'memory'): Sink & { files: Map<string, Uint8Array> } {
  return {
    location,
    files,
    async create(path) {
      const chunks: Uint8Array[] = [];
      return {
        async write(chunk) {
          chunks.push(chunk.slice());
        },
        async close() {
          const size = chunks.reduce((n, c) => n + c.length, 0);
          const bytes = new Uint8Array(size);
          let at = 0;
          for (const c of chunks) {
            bytes.set(c, at);
            at += c.length;
          }
          files.set(path, bytes);
        },
        async abort() {
          chunks.length = 0;
        },
      };
    },
    async read(path) {
      const bytes = files.get(path);
      if (!bytes) throw new Error(`${path} has not been written`);
      return bytes;
    },
  };
}
