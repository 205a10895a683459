// The model package manifest (docs/model-package.md §1): its types, and the checks made when it
// enters the engine, so that everything after this file can trust its shape.
import { settingProblem } from './samplingSettings';
import { BadPackageError } from './errors';
import type { SamplingSettings, TopKSchedule } from './types';

export const MANIFEST_FILE = 'manifest.json';
export const PACKAGE_FORMAT = 'hart-web-package';
export const PACKAGE_FORMAT_VERSION = 1;

export const GRAPH_NAMES = [
  'textEncoder',
  'condition',
  'transformer',
  'head',
  'scaleUpdate',
  'diffusionHead',
  'decoder',
  'preview',
] as const;
export type GraphName = (typeof GRAPH_NAMES)[number];

/**
 * Graphs a package may lack: packages written before them still load. The encoder (image →
 * f, token maps, f_hat) is only needed to start from an image, and is loaded on first use.
 */
export const OPTIONAL_GRAPH_NAMES = ['encoder'] as const;
export type OptionalGraphName = (typeof OPTIONAL_GRAPH_NAMES)[number];

export interface GraphVariant {
  path: string;
  externalData?: string[];
}

export interface GraphEntry {
  fp32: GraphVariant;
  fp16?: GraphVariant;
}

export type TableDtype = 'float32';

export interface TableEntry {
  path: string;
  offset: number;
  shape: number[];
  dtype: TableDtype;
}

export type FileDtype = 'float32' | 'float16' | 'int8' | 'int4' | 'json' | 'binary';

export interface FileEntry {
  path: string;
  bytes: number;
  sha256: string;
  dtype: FileDtype;
}

export interface DiffusionSpec {
  steps: number;
  trainSteps: number;
  schedule: 'cosine';
  scale: number;
}

export interface ModelSpec {
  imageSize: number;
  patchNums: number[];
  latentChannels: number;
  vocabSize: number;
  width: number;
  depth: number;
  heads: number;
  ropeTheta: number;
  phiIndex: number[];
  diffusion: DiffusionSpec;
}

export interface TextEncoderSpec {
  contextTokens: number;
  contextDim: number;
  prefixIds: number[];
  padId: number;
  unkId: number | null;
  lowercase: boolean;
}

/** Per graph variant: the largest GPU buffer and storage binding any of its graphs needs. */
export interface VariantRequirements {
  maxBufferBytes?: number;
  maxBindingBytes?: number;
}

/** The manifest's optional `requirements` field (docs/model-package.md §1). */
export interface PackageRequirements {
  fp32?: VariantRequirements;
  fp16?: VariantRequirements;
  /** The graphs compute in float16 even in their fp32 entries: WebGPU with `shader-f16` only. */
  shaderF16?: boolean;
}

export interface Manifest {
  format: typeof PACKAGE_FORMAT;
  formatVersion: typeof PACKAGE_FORMAT_VERSION;
  name: string;
  description: string;
  model: ModelSpec;
  textEncoder: TextEncoderSpec;
  sampling: SamplingSettings;
  examples: string[];
  graphs: Record<GraphName, GraphEntry> & Partial<Record<OptionalGraphName, GraphEntry>>;
  tokenizer: string;
  tables: Record<string, TableEntry>;
  files: FileEntry[];
  /** The optional `requirements` field; absent in older packages. */
  requirements?: PackageRequirements;
}

type Json = Record<string, unknown>;

/** Reads manifest fields with errors that name the field, e.g. `model.patchNums[3]`. */
class Reader {
  constructor(private readonly file: string) {}

  fail(field: string, problem: string): never {
    throw new BadPackageError(`${field} ${problem}`, this.file);
  }

  object(value: unknown, field: string): Json {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, 'must be an object');
    return value as Json;
  }

  string(value: unknown, field: string): string {
    if (typeof value !== 'string') this.fail(field, 'must be a string');
    return value;
  }

  number(value: unknown, field: string, rule: 'int' | 'positive' | 'positiveInt' | 'nonNegativeInt' | 'any' = 'any'): number {
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(field, 'must be a finite number');
    if ((rule === 'int' || rule === 'positiveInt' || rule === 'nonNegativeInt') && !Number.isInteger(value)) {
      this.fail(field, 'must be a whole number');
    }
    if ((rule === 'positive' || rule === 'positiveInt') && value <= 0) this.fail(field, 'must be greater than 0');
    if (rule === 'nonNegativeInt' && value < 0) this.fail(field, 'must not be negative');
    return value;
  }

  boolean(value: unknown, field: string): boolean {
    if (typeof value !== 'boolean') this.fail(field, 'must be true or false');
    return value;
  }

  array(value: unknown, field: string): unknown[] {
    if (!Array.isArray(value)) this.fail(field, 'must be an array');
    return value;
  }

  ints(value: unknown, field: string, rule: 'positiveInt' | 'nonNegativeInt'): number[] {
    return this.array(value, field).map((v, i) => this.number(v, `${field}[${i}]`, rule));
  }

  path(value: unknown, field: string): string {
    const path = this.string(value, field);
    if (path === '' || path.startsWith('/') || path.includes('\\') || path.split('/').some((part) => part === '..' || part === '')) {
      this.fail(field, `"${path}" must be a relative path inside the package (no "..", no leading "/")`);
    }
    return path;
  }
}

function readTopKSchedule(r: Reader, value: object): TopKSchedule {
  const t = r.object(value, 'sampling.topK');
  return { ...t, values: r.ints(t.values, 'sampling.topK.values', 'nonNegativeInt'), from: r.ints(t.from, 'sampling.topK.from', 'nonNegativeInt') };
}

function readSampling(r: Reader, value: unknown): SamplingSettings {
  const s = r.object(value, 'sampling');
  const sampling: SamplingSettings = {
    cfg: r.number(s.cfg, 'sampling.cfg'),
    // A number, or a schedule per scale (checked with the other settings below).
    topK: typeof s.topK === 'object' && s.topK !== null ? readTopKSchedule(r, s.topK) : r.number(s.topK, 'sampling.topK', 'nonNegativeInt'),
    topP: r.number(s.topP, 'sampling.topP'),
    temperature: r.number(s.temperature, 'sampling.temperature', 'positive'),
    smooth: r.boolean(s.smooth, 'sampling.smooth'),
    residual: r.boolean(s.residual, 'sampling.residual'),
    // Packages written before the setting existed guide every scale.
    guidedScales: s.guidedScales === undefined ? 0 : r.number(s.guidedScales, 'sampling.guidedScales', 'nonNegativeInt'),
  };
  // The package's defaults obey the same ranges as a request's settings.
  for (const [key, v] of Object.entries(sampling) as [keyof SamplingSettings, unknown][]) {
    const rule = settingProblem(key, v);
    if (rule) r.fail(`sampling.${key}`, `is ${JSON.stringify(v)}; it must be ${rule}`);
  }
  return sampling;
}

function readModel(r: Reader, value: unknown): ModelSpec {
  const m = r.object(value, 'model');
  const patchNums = r.ints(m.patchNums, 'model.patchNums', 'positiveInt');
  if (patchNums.length < 2) r.fail('model.patchNums', 'must list at least 2 scales');
  for (let k = 1; k < patchNums.length; k++) {
    if (patchNums[k] <= patchNums[k - 1]) r.fail(`model.patchNums[${k}]`, 'must be larger than the scale before it');
  }
  const phiIndex = r.ints(m.phiIndex, 'model.phiIndex', 'nonNegativeInt');
  if (phiIndex.length !== patchNums.length - 1) {
    r.fail('model.phiIndex', `must have one entry per scale but the last (${patchNums.length - 1}), found ${phiIndex.length}`);
  }
  const width = r.number(m.width, 'model.width', 'positiveInt');
  const heads = r.number(m.heads, 'model.heads', 'positiveInt');
  if (width % heads !== 0 || (width / heads) % 4 !== 0) {
    r.fail('model.heads', `must divide model.width (${width}) into heads whose size is a multiple of 4`);
  }
  const d = r.object(m.diffusion, 'model.diffusion');
  const schedule = r.string(d.schedule, 'model.diffusion.schedule');
  if (schedule !== 'cosine') r.fail('model.diffusion.schedule', `"${schedule}" is not supported (only "cosine")`);
  const steps = r.number(d.steps, 'model.diffusion.steps', 'positiveInt');
  const trainSteps = r.number(d.trainSteps, 'model.diffusion.trainSteps', 'positiveInt');
  if (steps > trainSteps) r.fail('model.diffusion.steps', 'must not exceed model.diffusion.trainSteps');
  return {
    imageSize: r.number(m.imageSize, 'model.imageSize', 'positiveInt'),
    patchNums,
    latentChannels: r.number(m.latentChannels, 'model.latentChannels', 'positiveInt'),
    vocabSize: r.number(m.vocabSize, 'model.vocabSize', 'positiveInt'),
    width,
    depth: r.number(m.depth, 'model.depth', 'positiveInt'),
    heads,
    ropeTheta: r.number(m.ropeTheta, 'model.ropeTheta', 'positive'),
    phiIndex,
    diffusion: { steps, trainSteps, schedule, scale: r.number(d.scale, 'model.diffusion.scale', 'positive') },
  };
}

function readTextEncoder(r: Reader, value: unknown): TextEncoderSpec {
  const t = r.object(value, 'textEncoder');
  return {
    contextTokens: r.number(t.contextTokens, 'textEncoder.contextTokens', 'positiveInt'),
    contextDim: r.number(t.contextDim, 'textEncoder.contextDim', 'positiveInt'),
    prefixIds: r.ints(t.prefixIds ?? [], 'textEncoder.prefixIds', 'nonNegativeInt'),
    padId: r.number(t.padId, 'textEncoder.padId', 'nonNegativeInt'),
    unkId: t.unkId === null || t.unkId === undefined ? null : r.number(t.unkId, 'textEncoder.unkId', 'nonNegativeInt'),
    lowercase: t.lowercase === undefined ? false : r.boolean(t.lowercase, 'textEncoder.lowercase'),
  };
}

function readVariant(r: Reader, value: unknown, field: string): GraphVariant {
  const v = r.object(value, field);
  const variant: GraphVariant = { path: r.path(v.path, `${field}.path`) };
  if (v.externalData !== undefined) {
    variant.externalData = r.array(v.externalData, `${field}.externalData`).map((p, i) => r.path(p, `${field}.externalData[${i}]`));
  }
  return variant;
}

function readGraphs(r: Reader, value: unknown): Manifest['graphs'] {
  const g = r.object(value, 'graphs');
  const graphs = {} as Manifest['graphs'];
  for (const name of [...GRAPH_NAMES, ...OPTIONAL_GRAPH_NAMES]) {
    if (g[name] === undefined) {
      if ((OPTIONAL_GRAPH_NAMES as readonly string[]).includes(name)) continue;
      r.fail(`graphs.${name}`, 'is missing');
    }
    const entry = r.object(g[name], `graphs.${name}`);
    if (entry.fp32 === undefined) r.fail(`graphs.${name}.fp32`, 'is missing (every graph needs an fp32 variant)');
    graphs[name] = { fp32: readVariant(r, entry.fp32, `graphs.${name}.fp32`) };
    if (entry.fp16 !== undefined) graphs[name].fp16 = readVariant(r, entry.fp16, `graphs.${name}.fp16`);
  }
  return graphs;
}

const FILE_DTYPES: FileDtype[] = ['float32', 'float16', 'int8', 'int4', 'json', 'binary'];

function readFiles(r: Reader, value: unknown): FileEntry[] {
  const seen = new Set<string>();
  return r.array(value, 'files').map((item, i) => {
    const field = `files[${i}]`;
    const f = r.object(item, field);
    const path = r.path(f.path, `${field}.path`);
    if (seen.has(path)) r.fail(`${field}.path`, `"${path}" is listed twice`);
    seen.add(path);
    const sha256 = r.string(f.sha256, `${field}.sha256`);
    if (!/^[0-9a-f]{64}$/.test(sha256)) r.fail(`${field}.sha256`, 'must be 64 lowercase hex digits');
    const dtype = r.string(f.dtype, `${field}.dtype`) as FileDtype;
    if (!FILE_DTYPES.includes(dtype)) r.fail(`${field}.dtype`, `"${dtype}" is not one of ${FILE_DTYPES.join(', ')}`);
    return { path, bytes: r.number(f.bytes, `${field}.bytes`, 'nonNegativeInt'), sha256, dtype };
  });
}

function readTables(r: Reader, value: unknown): Record<string, TableEntry> {
  const t = r.object(value, 'tables');
  const tables: Record<string, TableEntry> = {};
  for (const [name, entry] of Object.entries(t)) {
    const field = `tables.${name}`;
    const e = r.object(entry, field);
    const dtype = r.string(e.dtype, `${field}.dtype`);
    if (dtype !== 'float32') r.fail(`${field}.dtype`, `"${dtype}" is not supported (only float32)`);
    const offset = r.number(e.offset, `${field}.offset`, 'nonNegativeInt');
    if (offset % 4 !== 0) r.fail(`${field}.offset`, 'must be a multiple of 4');
    tables[name] = { path: r.path(e.path, `${field}.path`), offset, shape: r.ints(e.shape, `${field}.shape`, 'nonNegativeInt'), dtype };
  }
  return tables;
}

/** Checks that the tables the pipeline reads exist with the shapes it expects. */
function checkTables(r: Reader, m: Manifest): void {
  const { patchNums, latentChannels: cv, vocabSize: v, width: c } = m.model;
  const K = patchNums.length;
  const h = patchNums[K - 1];
  const phiCount = Math.max(...m.model.phiIndex) + 1;
  const expect = (name: string, shape: number[]) => {
    const t = m.tables[name];
    if (!t) r.fail(`tables.${name}`, 'is missing');
    if (name === 'phiWeight' || name === 'phiBias') {
      if (t.shape.length !== shape.length || t.shape[0] < phiCount || t.shape.slice(1).some((d, i) => d !== shape[i + 1])) {
        r.fail(`tables.${name}.shape`, `is [${t.shape}], expected [≥${phiCount}, ${shape.slice(1)}]`);
      }
    } else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      r.fail(`tables.${name}.shape`, `is [${t.shape}], expected [${shape}]`);
    }
  };
  expect('codebook', [v, cv]);
  expect('phiWeight', [phiCount, cv, cv, 3, 3]);
  expect('phiBias', [phiCount, cv]);
  expect('levels', [K, c]);
  for (let k = 0; k < K; k++) {
    expect(`upsample.${k}`, [h, patchNums[k]]);
    expect(`downsample.${k}`, [patchNums[k], h]);
  }
}

/** Every file the manifest refers to must be listed in `files`. */
function checkReferences(r: Reader, m: Manifest): void {
  const listed = new Set(m.files.map((f) => f.path));
  const need = (path: string, field: string) => {
    if (!listed.has(path)) r.fail(field, `refers to "${path}", which is not listed in files`);
  };
  need(m.tokenizer, 'tokenizer');
  for (const name of [...GRAPH_NAMES, ...OPTIONAL_GRAPH_NAMES]) {
    for (const kind of ['fp32', 'fp16'] as const) {
      const variant = m.graphs[name]?.[kind];
      if (!variant) continue;
      need(variant.path, `graphs.${name}.${kind}.path`);
      variant.externalData?.forEach((p, i) => need(p, `graphs.${name}.${kind}.externalData[${i}]`));
    }
  }
  for (const [name, t] of Object.entries(m.tables)) {
    need(t.path, `tables.${name}.path`);
    const file = m.files.find((f) => f.path === t.path)!;
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 4;
    if (t.offset + bytes > file.bytes) {
      r.fail(`tables.${name}`, `reaches byte ${t.offset + bytes} but ${t.path} has only ${file.bytes} bytes`);
    }
  }
}

function readVariantRequirements(value: unknown, field: string, file: string): VariantRequirements | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new BadPackageError(`${field} must be an object`, file);
  const out: VariantRequirements = {};
  for (const key of ['maxBufferBytes', 'maxBindingBytes'] as const) {
    const v = (value as Record<string, unknown>)[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new BadPackageError(`${field}.${key} must be a whole number of bytes`, file);
    out[key] = v;
  }
  return out;
}

/**
 * The optional `requirements` field. Absent in older packages: then undefined, and preflight
 * falls back to file sizes.
 */
function readRequirements(value: unknown, file: string): PackageRequirements | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new BadPackageError('requirements must be an object', file);
  const r = value as Record<string, unknown>;
  if (r.shaderF16 !== undefined && typeof r.shaderF16 !== 'boolean') throw new BadPackageError('requirements.shaderF16 must be true or false', file);
  return {
    fp32: readVariantRequirements(r.fp32, 'requirements.fp32', file),
    fp16: readVariantRequirements(r.fp16, 'requirements.fp16', file),
    shaderF16: r.shaderF16 as boolean | undefined,
  };
}

/** Validates parsed manifest JSON and returns it typed; errors name the field and the file. */
export function parseManifest(json: unknown, file = MANIFEST_FILE): Manifest {
  const r = new Reader(file);
  const root = r.object(json, 'the manifest');
  if (root.format !== PACKAGE_FORMAT) {
    r.fail('format', `is ${JSON.stringify(root.format)}, expected "${PACKAGE_FORMAT}" (this is not a HART Web model package)`);
  }
  if (root.formatVersion !== PACKAGE_FORMAT_VERSION) {
    r.fail('formatVersion', `is ${JSON.stringify(root.formatVersion)}; this engine reads version ${PACKAGE_FORMAT_VERSION} only`);
  }
  const manifest: Manifest = {
    format: PACKAGE_FORMAT,
    formatVersion: PACKAGE_FORMAT_VERSION,
    name: r.string(root.name, 'name'),
    description: root.description === undefined ? '' : r.string(root.description, 'description'),
    model: readModel(r, root.model),
    textEncoder: readTextEncoder(r, root.textEncoder),
    sampling: readSampling(r, root.sampling),
    examples: root.examples === undefined ? [] : r.array(root.examples, 'examples').map((e, i) => r.string(e, `examples[${i}]`)),
    graphs: readGraphs(r, root.graphs),
    tokenizer: r.path(root.tokenizer, 'tokenizer'),
    tables: readTables(r, root.tables),
    files: readFiles(r, root.files),
  };
  const requirements = readRequirements(root.requirements, file);
  if (requirements) manifest.requirements = requirements;
  checkTables(r, manifest);
  checkReferences(r, manifest);
  return manifest;
}

/** Parses manifest bytes (UTF-8 JSON). */
export function parseManifestBytes(bytes: Uint8Array, file = MANIFEST_FILE): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new BadPackageError(`is not valid JSON (${(error as Error).message})`, file, { cause: error });
  }
  return parseManifest(json, file);
}
