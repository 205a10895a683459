// Loading a model package: the manifest, then each needed file checked against the manifest's
// size and sha256 before anything uses it, then the small tables as typed arrays.
import { BadPackageError } from './errors';
import type { PackageIO } from './readers';
import { GRAPH_NAMES, MANIFEST_FILE, parseManifestBytes, type FileEntry, type GraphName, type GraphVariant, type OptionalGraphName, type Manifest } from './manifest';
import type { LoadProgress } from './types';

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The manifest's entry for each path; a path the manifest does not list is a BadPackageError. */
export function fileEntries(manifest: Manifest, paths: string[]): FileEntry[] {
  return paths.map((path) => {
    const entry = manifest.files.find((f) => f.path === path);
    if (!entry) throw new BadPackageError('is not listed in the manifest', path);
    return entry;
  });
}

/** Throws a BadPackageError naming the file when its size or sha256 differ from the manifest's. */
export async function verifyFile(manifest: Manifest, path: string, bytes: Uint8Array): Promise<void> {
  const [entry] = fileEntries(manifest, [path]);
  if (bytes.length !== entry.bytes) {
    const how = bytes.length < entry.bytes ? 'truncated' : 'too long';
    throw new BadPackageError(`is ${bytes.length} bytes but the manifest says ${entry.bytes} (the file is ${how})`, path);
  }
  const actual = await sha256Hex(bytes);
  if (actual !== entry.sha256) {
    throw new BadPackageError(`sha256 is ${actual} but the manifest says ${entry.sha256} (the file is corrupt or from another version)`, path);
  }
}

export async function readManifest(io: PackageIO, signal?: AbortSignal): Promise<Manifest> {
  return parseManifestBytes(await io.read(MANIFEST_FILE, { signal }), MANIFEST_FILE);
}

/** The graph variant the backend will run: fp16 only when allowed and present. */
export function graphVariant(manifest: Manifest, name: GraphName | OptionalGraphName, fp16: boolean): GraphVariant {
  const entry = manifest.graphs[name];
  if (!entry) throw new BadPackageError(`has no ${name} graph`, MANIFEST_FILE);
  return fp16 && entry.fp16 ? entry.fp16 : entry.fp32;
}

/** Every file needed to run on a backend, in load order (tokenizer and tables first, then graphs). */
export function neededFiles(manifest: Manifest, fp16: boolean): string[] {
  const paths = new Set<string>([manifest.tokenizer]);
  for (const table of Object.values(manifest.tables)) paths.add(table.path);
  for (const name of GRAPH_NAMES) {
    const variant = graphVariant(manifest, name, fp16);
    paths.add(variant.path);
    variant.externalData?.forEach((p) => paths.add(p));
  }
  return [...paths];
}

/**
 * Verifies `bytes` just read for `path`. When they fail and the IO can evict, the cached copy is
 * evicted and `read` is called once more (a download); a second failure is thrown, naming the file.
 */
export async function verifiedOrReread(
  io: PackageIO,
  manifest: Manifest,
  path: string,
  bytes: Uint8Array,
  read: () => Promise<Uint8Array>,
): Promise<Uint8Array> {
  try {
    await verifyFile(manifest, path, bytes);
    return bytes;
  } catch (error) {
    const entry = manifest.files.find((f) => f.path === path);
    if (!io.evict || !entry) throw error;
    await io.evict(path, entry.sha256);
    const again = await read();
    await verifyFile(manifest, path, again);
    return again;
  }
}

/**
 * Reads and verifies `paths`. A cached copy that fails verification is evicted and fetched once
 * more, so a broken cache heals itself; a second failure is reported.
 */
export async function readVerified(
  io: PackageIO,
  manifest: Manifest,
  paths: string[],
  onProgress?: (progress: LoadProgress) => void,
  signal?: AbortSignal,
): Promise<Map<string, Uint8Array>> {
  const entries = fileEntries(manifest, paths);
  const total = entries.reduce((n, e) => n + e.bytes, 0);
  let done = 0;
  const files = new Map<string, Uint8Array>();
  for (const entry of entries) {
    const read = () =>
      io.read(entry.path, {
        sha256: entry.sha256,
        bytes: entry.bytes,
        signal,
        onProgress: (loaded) => onProgress?.({ phase: 'download', file: entry.path, loaded: done + Math.min(loaded, entry.bytes), total }),
      });
    files.set(entry.path, await verifiedOrReread(io, manifest, entry.path, await read(), read));
    done += entry.bytes;
    onProgress?.({ phase: 'download', file: entry.path, loaded: done, total });
  }
  return files;
}

/** The little-endian float32 tables of `tables.bin`, by name. */
export function readTables(manifest: Manifest, files: Map<string, Uint8Array>): Map<string, Float32Array> {
  const tables = new Map<string, Float32Array>();
  for (const [name, table] of Object.entries(manifest.tables)) {
    const bytes = files.get(table.path);
    if (!bytes) throw new BadPackageError(`is needed by table ${name} but was not loaded`, table.path);
    const count = table.shape.reduce((a, b) => a * b, 1);
    const view = new DataView(bytes.buffer, bytes.byteOffset + table.offset, count * 4);
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(i * 4, true);
    tables.set(name, values);
  }
  return tables;
}
