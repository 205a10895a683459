// `.safetensors`: an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
// data_offsets relative to the end of the header), then the raw tensors. Only the header is read
// up front; each tensor is one range of the file.
import { CheckpointError } from '../errors';
import { decodeToFloat32, DTYPE_BYTES, elementCount, type StoredDtype, type TensorEntry, type WeightFile } from './weightFile';
import type { Source } from './source';

const DTYPES: Record<string, StoredDtype> = {
  F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32', I16: 'int16', I8: 'int8', U8: 'uint8', BOOL: 'bool',
};
// A larger header is not a safetensors file (the reference implementation's limit).
const MAX_HEADER = 100 * 1024 * 1024;

interface Stored extends TensorEntry {
  begin: number;
  end: number;
}

export async function openSafetensors(source: Source, path: string, signal?: AbortSignal): Promise<WeightFile> {
  const where = source.describe(path);
  const size = await source.size(path, signal);
  if (size < 8) throw new CheckpointError('is too short for a safetensors header', where);
  const prefix = new DataView((await source.read(path, 0, 8, signal)).buffer);
  const headerLength = Number(prefix.getBigUint64(0, true));
  if (headerLength > MAX_HEADER || 8 + headerLength > size) throw new CheckpointError(`header length ${headerLength} does not fit the file`, where);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(await source.read(path, 8, 8 + headerLength, signal)));
  } catch (error) {
    throw new CheckpointError(`header is not JSON (${(error as Error).message})`, where);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new CheckpointError('header is not a JSON object', where);
  const dataStart = 8 + headerLength;
  const dataLength = size - dataStart;
  const tensors = new Map<string, Stored>();
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = value as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    if (!entry || typeof entry !== 'object' || !entry.dtype || !Array.isArray(entry.shape) || !Array.isArray(entry.data_offsets)) {
      throw new CheckpointError(`entry ${JSON.stringify(name)} lacks dtype/shape/data_offsets`, where);
    }
    const dtype = DTYPES[entry.dtype];
    if (!dtype) throw new CheckpointError(`tensor ${JSON.stringify(name)} has unsupported dtype ${entry.dtype}`, where);
    const [begin, end] = entry.data_offsets;
    const expected = elementCount(entry.shape) * DTYPE_BYTES[dtype];
    if (!(begin >= 0 && begin <= end && end <= dataLength && end - begin === expected)) {
      throw new CheckpointError(`tensor ${JSON.stringify(name)} offsets [${begin}, ${end}) do not match its shape [${entry.shape.join(', ')}] (${entry.dtype}) inside ${dataLength} data bytes`, where);
    }
    tensors.set(name, { dtype, shape: entry.shape.map(Number), begin: dataStart + begin, end: dataStart + end });
  }
  return {
    name: path,
    keys: () => [...tensors.keys()],
    entry(key) {
      const t = tensors.get(key);
      return t && { dtype: t.dtype, shape: t.shape };
    },
    async readFloat32(key, readSignal) {
      const t = tensors.get(key);
      if (!t) throw new CheckpointError(`has no tensor ${key}`, where);
      return decodeToFloat32(await source.read(path, t.begin, t.end, readSignal), t.dtype);
    },
  };
}
