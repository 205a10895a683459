// A published state dict read lazily: names, dtypes and shapes up front, each tensor's bytes
// only when asked (one range of the file), converted to float32. The readers are torchZip.ts
// (`*.bin`, torch.save's zip of pickles) and safetensors.ts; this file finds and opens them.
import { CheckpointError } from '../errors';
import { fromBfloat16, fromFloat16 } from './halfFloat';
import { readJson, type Source } from './source';

export type StoredDtype = 'float64' | 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export const DTYPE_BYTES: Record<StoredDtype, number> = {
  float64: 8, float32: 4, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

export interface TensorEntry {
  dtype: StoredDtype;
  shape: number[];
}

export interface WeightFile {
  /** The file, for messages (`ema_model.bin`, `model.safetensors.index.json`). */
  readonly name: string;
  /** Tensor names in the file's order. */
  keys(): string[];
  entry(key: string): TensorEntry | undefined;
  /** The tensor's values as float32, row-major (exact for every float dtype). */
  readFloat32(key: string, signal?: AbortSignal): Promise<Float32Array>;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Little-endian stored values -> float32 (`bytes` holds exactly the elements). */
export function decodeToFloat32(bytes: Uint8Array, dtype: StoredDtype): Float32Array {
  // Copy into an aligned buffer of its own: a range read may start anywhere.
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const buffer = aligned.buffer;
  const offset = aligned.byteOffset;
  const count = bytes.length / DTYPE_BYTES[dtype];
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer.slice(offset, offset + bytes.length) as ArrayBuffer);
    case 'float16':
      return fromFloat16(new Uint16Array(buffer, offset, count));
    case 'bfloat16':
      return fromBfloat16(new Uint16Array(buffer, offset, count));
    case 'float64':
      return Float32Array.from(new Float64Array(buffer, offset, count));
    case 'int64':
      return Float32Array.from(new BigInt64Array(buffer, offset, count), (v) => Number(v));
    case 'int32':
      return Float32Array.from(new Int32Array(buffer, offset, count));
    case 'int16':
      return Float32Array.from(new Int16Array(buffer, offset, count));
    case 'int8':
      return Float32Array.from(new Int8Array(buffer, offset, count));
    case 'uint8':
    case 'bool':
      return Float32Array.from(new Uint8Array(buffer, offset, count));
  }
}

/** Several files read as one state dict (a sharded checkpoint), later files last. */
export function joinWeightFiles(name: string, files: WeightFile[]): WeightFile {
  const owner = new Map<string, WeightFile>();
  for (const file of files) for (const key of file.keys()) owner.set(key, file);
  return {
    name,
    keys: () => [...owner.keys()],
    entry: (key) => owner.get(key)?.entry(key),
    readFloat32(key, signal) {
      const file = owner.get(key);
      if (!file) throw new CheckpointError(`has no tensor ${key}`, name);
      return file.readFloat32(key, signal);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Finding and opening

/** Hugging Face's usual weight file names, in the order the Python converter tries them. */
export const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];
const WEIGHT_SUFFIXES = ['.safetensors', '.bin', '.pt', '.pth'];

/** The weight file of a published folder: the first of `preferred`, then the usual names, then its only weight file. */
export async function findWeights(source: Source, preferred: string[] = [], signal?: AbortSignal): Promise<string> {
  const names = [...new Set([...preferred, ...WEIGHT_FILES])];
  for (const name of names) if (await source.exists(name, signal)) return name;
  const others = (await source.list('', signal)).filter((n) => WEIGHT_SUFFIXES.some((s) => n.endsWith(s)));
  if (others.length === 1) return others[0];
  throw new CheckpointError(`no weights in ${source.location}: looked for ${names.join(', ')}`);
}

/** Opens a `.safetensors`, a torch `.bin`/`.pt` or a sharded `*.index.json` (paths relative to `source`). */
export async function openWeights(source: Source, path: string, signal?: AbortSignal): Promise<WeightFile> {
  if (path.endsWith('.index.json')) {
    const index = (await readJson(source, path, signal)) as { weight_map?: Record<string, string> };
    const shards = [...new Set(Object.values(index?.weight_map ?? {}))].sort();
    if (!shards.length) throw new CheckpointError('weight_map is empty', source.describe(path));
    const folder = path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '';
    const files: WeightFile[] = [];
    for (const shard of shards) files.push(await openWeights(source, folder + shard, signal));
    return joinWeightFiles(path, files);
  }
  // Imported on demand: the app's bundle gets the readers (zip, pickle) as chunks of their own,
  // loaded only when a checkpoint is imported.
  if (path.endsWith('.safetensors')) {
    const { openSafetensors } = await import('./safetensors');
    return openSafetensors(source, path, signal);
  }
  const { openTorchZip } = await import('./torchZip');
  return openTorchZip(source, path, signal);
}
