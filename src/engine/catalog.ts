// The list of models the app offers, as data (public/models/catalog.json): a new published
// checkpoint is a new entry, not new code. Each entry says where the model comes from (a package
// served as files, or the published checkpoint to import), how much it downloads and keeps, and
// what a device needs to run it, so a person can decide before any byte is fetched.
import { BadInputError } from './errors';
import { formatBytes } from './preflight';

export const CATALOG_FORMAT = 'hart-web-catalog';

/** A model package served as files (docs/model-package.md). */
export interface PackageSource {
  kind: 'package';
  /** The package folder; relative entries are resolved against the catalog's address. */
  url: string;
}

/** A published checkpoint, imported into a package on this machine. */
export interface ImportSource {
  kind: 'import';
  /** The HART repository (llm/, tokenizer/) and the Qwen2 text encoder's: hub URLs. */
  hart: string;
  qwen: string;
  /** The package's graphs without their weights, and where each weight comes from. */
  skeleton: string;
}

export interface CatalogNeeds {
  /** Only WebGPU can run it (its weights exceed what WASM can hold). */
  webgpu: boolean;
  /** Its graphs compute in float16: the adapter needs `shader-f16`. */
  shaderF16: boolean;
  /** The largest GPU buffer it allocates, in bytes (0 when small). */
  gpuBufferBytes: number;
}

export interface CatalogEntry {
  id: string;
  name: string;
  description: string;
  imageSize: number;
  source: PackageSource | ImportSource;
  /** Bytes fetched over the network. */
  downloadBytes: number;
  /** Bytes this browser keeps afterwards. */
  diskBytes: number;
  needs: CatalogNeeds;
}

type Json = Record<string, unknown>;

function fail(where: string, why: string): never {
  throw new BadInputError(`The model list ${where} ${why}.`);
}

function object(value: unknown, where: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(where, 'is not an object');
  return value as Json;
}

function text(entry: Json, field: string, where: string): string {
  const value = entry[field];
  if (typeof value !== 'string' || !value.trim()) fail(`${where}.${field}`, 'must be a non-empty string');
  return value;
}

function whole(entry: Json, field: string, where: string): number {
  const value = entry[field];
  if (!Number.isSafeInteger(value) || (value as number) < 0) fail(`${where}.${field}`, 'must be a whole number ≥ 0');
  return value as number;
}

function flag(entry: Json, field: string, where: string): boolean {
  const value = entry[field];
  if (typeof value !== 'boolean') fail(`${where}.${field}`, 'must be true or false');
  return value;
}

/** A URL of the catalog, resolved against its address; only http(s) may be fetched. */
function address(entry: Json, field: string, where: string, base: string): string {
  const raw = text(entry, field, where);
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    fail(`${where}.${field}`, `is no URL (${raw})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`${where}.${field}`, `must be an http(s) address (${raw})`);
  return url.href;
}

function source(value: unknown, where: string, base: string): PackageSource | ImportSource {
  const s = object(value, where);
  if (s.kind === 'package') return { kind: 'package', url: address(s, 'url', where, base) };
  if (s.kind === 'import') {
    return { kind: 'import', hart: address(s, 'hart', where, base), qwen: address(s, 'qwen', where, base), skeleton: address(s, 'skeleton', where, base) };
  }
  fail(`${where}.kind`, 'must be "package" or "import"');
}

function entry(value: unknown, where: string, base: string): CatalogEntry {
  const e = object(value, where);
  const needs = object(e.needs, `${where}.needs`);
  return {
    id: text(e, 'id', where),
    name: text(e, 'name', where),
    description: text(e, 'description', where),
    imageSize: whole(e, 'imageSize', where),
    source: source(e.source, `${where}.source`, base),
    downloadBytes: whole(e, 'downloadBytes', where),
    diskBytes: whole(e, 'diskBytes', where),
    needs: {
      webgpu: flag(needs, 'webgpu', `${where}.needs`),
      shaderF16: flag(needs, 'shaderF16', `${where}.needs`),
      gpuBufferBytes: whole(needs, 'gpuBufferBytes', `${where}.needs`),
    },
  };
}

/** Reads the catalog at `base` (its own address); throws BadInputError naming the field at fault. */
export function parseCatalog(value: unknown, base: string): CatalogEntry[] {
  const root = object(value, '');
  if (root.format !== CATALOG_FORMAT || root.version !== 1) fail('format', `must be "${CATALOG_FORMAT}" version 1`);
  if (!Array.isArray(root.models)) fail('models', 'must be a list');
  const entries = root.models.map((m, i) => entry(m, `models[${i}]`, base));
  const ids = new Set<string>();
  for (const e of entries) {
    if (ids.has(e.id)) fail(`id "${e.id}"`, 'appears twice');
    ids.add(e.id);
  }
  return entries;
}

/** What a device needs for an entry, in words for people. */
export function describeNeeds(needs: CatalogNeeds): string {
  const parts: string[] = [];
  if (needs.webgpu) parts.push(needs.shaderF16 ? 'WebGPU with shader-f16' : 'WebGPU');
  else parts.push('WebGPU or WASM');
  if (needs.gpuBufferBytes > 0) parts.push(`a GPU buffer of ${formatBytes(needs.gpuBufferBytes)}`);
  return parts.join(', ');
}
