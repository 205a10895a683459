// torch.save's format: a zip (entries stored, not compressed) holding `<archive>/data.pkl`, a
// pickle of the state dict whose tensors point at storages `<archive>/data/<key>` through
// persistent ids. The zip's central directory is read with @zip.js/zip.js through a range
// reader, the pickle with pickleparser; tensor bytes are read later, range by range.
//
// Only what a state dict needs is unpickled (dicts, torch's tensor rebuild functions, storage
// types); any other global stops the reader, as torch.load(weights_only=True) does.
import { configure, Reader, ZipReader, type Entry } from '@zip.js/zip.js';
import { Parser } from 'pickleparser';
import { CheckpointError } from '../errors';
import { decodeToFloat32, DTYPE_BYTES, elementCount, type StoredDtype, type TensorEntry, type WeightFile } from './weightFile';
import type { Source } from './source';

// Entries are stored uncompressed: no codec (and no web worker) is ever needed.
configure({ useWebWorkers: false });

type ParserOptions = NonNullable<ConstructorParameters<typeof Parser>[0]>;
type NameResolver = NonNullable<ParserOptions['nameResolver']>;
type PersistentResolver = NonNullable<ParserOptions['persistentResolver']>;

const STORAGE_DTYPES: Record<string, StoredDtype> = {
  FloatStorage: 'float32', HalfStorage: 'float16', BFloat16Storage: 'bfloat16', DoubleStorage: 'float64',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8', BoolStorage: 'bool',
};

class StorageType {
  constructor(readonly dtype: StoredDtype) {}
}

class StorageRef {
  constructor(readonly dtype: StoredDtype, readonly key: string, readonly numel: number) {}
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage. */
export class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly shape: number[], readonly strides: number[]) {}
}

/** A pickled OrderedDict: a Map that ignores the attributes torch attaches (`_metadata`). */
class PickledOrderedDict extends Map<unknown, unknown> {
  __setstate__(): void {}
}

const toNumbers = (value: unknown): number[] => (Array.isArray(value) ? value.map(Number) : [Number(value)]);

function resolver(file: string): NameResolver {
  return {
    resolve(module: string, name: string) {
      if (module === 'collections' && name === 'OrderedDict') return () => new PickledOrderedDict();
      if (module === 'torch._utils' && name === '_rebuild_tensor_v2') {
        return (storage: unknown, offset: unknown, size: unknown, stride: unknown) => {
          if (!(storage instanceof StorageRef)) throw new CheckpointError('a tensor does not point at a storage', file);
          return new TensorRef(storage, Number(offset), toNumbers(size), toNumbers(stride));
        };
      }
      if (module === 'torch._utils' && name === '_rebuild_parameter') return (data: unknown) => data;
      if (module === 'torch' && name in STORAGE_DTYPES) return Object.assign(() => undefined, { storageType: new StorageType(STORAGE_DTYPES[name]) });
      throw new CheckpointError(`pickles ${module}.${name}, which a weights-only reader does not load`, file);
    },
  } as NameResolver;
}

function persistent(file: string): PersistentResolver {
  return {
    resolve(pid: unknown) {
      // ('storage', storage type, key, location, element count)
      const tuple = pid as unknown[];
      const type = (tuple?.[1] as { storageType?: StorageType } | undefined)?.storageType;
      if (!Array.isArray(tuple) || tuple[0] !== 'storage' || !type) throw new CheckpointError(`has an unknown persistent id ${JSON.stringify(pid)}`, file);
      return new StorageRef(type.dtype, String(tuple[2]), Number(tuple[4]));
    },
  } as PersistentResolver;
}

/** zip.js reads the zip through this: ranges of the Source. */
class SourceReader extends Reader<null> {
  constructor(private readonly source: Source, private readonly path: string, size: number, private readonly signal?: AbortSignal) {
    super(null);
    this.size = size;
  }

  async readUint8Array(index: number, length: number): Promise<Uint8Array> {
    return this.source.read(this.path, index, Math.min(index + length, this.size), this.signal);
  }
}

/** Unwraps {"state_dict": …} / {"model": …} around the tensors, as the Python converter does. */
function unwrap(value: unknown, file: string): Map<string, TensorRef> {
  let obj = value;
  for (let i = 0; i < 2; i++) {
    if (obj instanceof Map && obj.size && ![...obj.values()].some((v) => v instanceof TensorRef)) {
      const inner = [...obj.entries()].filter(([k, v]) => ['state_dict', 'model', 'module', 'ema'].includes(String(k)) && v instanceof Map);
      if (inner.length === 1) obj = inner[0][1];
    }
  }
  if (!(obj instanceof Map) || ![...obj.values()].every((v) => v instanceof TensorRef)) {
    throw new CheckpointError('does not hold a flat dict of tensors', file);
  }
  return obj as Map<string, TensorRef>;
}

/** Where an entry's bytes start: after its local header, whose lengths may differ from the central directory's. */
async function dataStart(source: Source, path: string, entry: Entry, where: string, signal?: AbortSignal): Promise<number> {
  const header = await source.read(path, entry.offset, entry.offset + 30, signal);
  const view = new DataView(header.buffer, header.byteOffset, 30);
  if (view.getUint32(0, true) !== 0x04034b50) throw new CheckpointError(`zip entry ${entry.filename} has no local header`, where);
  return entry.offset + 30 + view.getUint16(26, true) + view.getUint16(28, true);
}

export async function openTorchZip(source: Source, path: string, signal?: AbortSignal): Promise<WeightFile> {
  const where = source.describe(path);
  const size = await source.size(path, signal);
  const head = await source.read(path, 0, Math.min(4, size), signal);
  if (head.length < 4 || head[0] !== 0x50 || head[1] !== 0x4b) {
    throw new CheckpointError('is not a torch zip checkpoint (torch.save before 1.6 wrote another format; re-save it with a recent torch)', where);
  }
  let entries: Entry[];
  try {
    entries = await new ZipReader(new SourceReader(source, path, size, signal)).getEntries();
  } catch (error) {
    if (error instanceof CheckpointError) throw error;
    throw new CheckpointError(`is not a readable zip (${(error as Error).message})`, where);
  }
  const pickle = entries.find((e) => e.filename === 'data.pkl' || e.filename.endsWith('/data.pkl'));
  if (!pickle) throw new CheckpointError('has no data.pkl: not a torch checkpoint', where);
  const archive = pickle.filename.slice(0, pickle.filename.length - 'data.pkl'.length);
  const byName = new Map(entries.map((e) => [e.filename, e]));
  const stored = async (entry: Entry) => {
    if (entry.compressionMethod !== 0) throw new CheckpointError(`zip entry ${entry.filename} is compressed (torch stores them uncompressed)`, where);
    return dataStart(source, path, entry, where, signal);
  };
  const start = await stored(pickle);
  const pickleBytes = await source.read(path, start, start + pickle.uncompressedSize, signal);
  let state: Map<string, TensorRef>;
  try {
    const parser = new Parser({ nameResolver: resolver(where), persistentResolver: persistent(where), unpicklingTypeOfDictionary: 'Map' });
    state = unwrap(parser.parse(pickleBytes), where);
  } catch (error) {
    if (error instanceof CheckpointError) throw error;
    throw new CheckpointError(`data.pkl could not be read (${(error as Error).message})`, where);
  }

  const storageStarts = new Map<string, Promise<number>>();
  const storageStart = (ref: StorageRef) => {
    let found = storageStarts.get(ref.key);
    if (!found) {
      const entry = byName.get(`${archive}data/${ref.key}`);
      if (!entry) throw new CheckpointError(`has no storage data/${ref.key}`, where);
      if (entry.uncompressedSize < ref.numel * DTYPE_BYTES[ref.dtype]) throw new CheckpointError(`storage data/${ref.key} is shorter than its ${ref.numel} elements`, where);
      found = stored(entry);
      storageStarts.set(ref.key, found);
    }
    return found;
  };

  return {
    name: path,
    keys: () => [...state.keys()],
    entry(key): TensorEntry | undefined {
      const t = state.get(key);
      return t && { dtype: t.storage.dtype, shape: t.shape };
    },
    async readFloat32(key, readSignal) {
      const t = state.get(key);
      if (!t) throw new CheckpointError(`has no tensor ${key}`, where);
      const count = elementCount(t.shape);
      const itemBytes = DTYPE_BYTES[t.storage.dtype];
      if (count === 0) return new Float32Array(0);
      // The storage elements the view touches: [offset, last] (strides are never negative in torch).
      let last = t.offset;
      for (let d = 0; d < t.shape.length; d++) last += (t.shape[d] - 1) * t.strides[d];
      if (last >= t.storage.numel) throw new CheckpointError(`tensor ${key} reaches past its storage`, where);
      const base = await storageStart(t.storage);
      const bytes = await source.read(path, base + t.offset * itemBytes, base + (last + 1) * itemBytes, readSignal);
      const span = decodeToFloat32(bytes, t.storage.dtype);
      if (isContiguous(t.shape, t.strides) && span.length === count) return span;
      return gather(span, t.shape, t.strides);
    },
  };
}

function isContiguous(shape: number[], strides: number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && strides[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}

/** The row-major copy of a strided view (a transposed or sliced tensor saved as is). */
function gather(span: Float32Array, shape: number[], strides: number[]): Float32Array {
  const out = new Float32Array(elementCount(shape));
  const index = new Array(shape.length).fill(0);
  for (let i = 0; i < out.length; i++) {
    let at = 0;
    for (let d = 0; d < shape.length; d++) at += index[d] * strides[d];
    out[i] = span[at];
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}
