// An import skeleton (docs/model-package.md §5): the converter's graph files, a weight map
// (weights.json) and manifest templates. This file reads weights.json and applies its checks
// to the published folders: config values (§5.4) and the published weights' keys and shapes
// (§5.3), with the Python converter's messages (tools/convert/checkpoint.py).
import { CheckpointError } from '../errors';
import type { ArrayDtype, Expr, NDArray } from './weightMap';
import { readJson, subSource, type Source } from './source';
import { findWeights, openWeights, elementCount, type WeightFile } from './weightFile';

export interface Segment {
  offset: number;
  length: number;
  dtype: ArrayDtype;
  shape: number[];
  name: string;
  expr: Expr;
}

export interface WeightFileMap {
  bytes: number;
  segments: Segment[];
}

export interface SkeletonVariant {
  textEncoderBits: number;
  manifest: string;
  copy: Record<string, string>;
  files: Record<string, WeightFileMap>;
}

export interface SourceSpec {
  root: 'hart' | 'qwen';
  folder: string;
  what: string;
  files: string[];
  keys: Record<string, number[]>;
  warnUnlessPrefix?: string;
  prefix: { text: string; when: 'any' | 'each' } | null;
  dropStored: string[];
  dropUnprefixed: string[];
  drop: string[];
  checks?: { key: string; numel: number }[];
}

export interface ConfigCheck {
  root: 'hart' | 'qwen';
  file: string;
  field: string;
  expected: unknown;
  default?: unknown;
}

export interface WeightMapFile {
  format: 1;
  options: { fp16: boolean; blockSize: number; shardMb: number; attention: string; name: string };
  variants: Record<string, SkeletonVariant>;
  files: Record<string, WeightFileMap>;
  sources: Record<string, SourceSpec>;
  configs: ConfigCheck[];
  text: { systemPrompt: string; window: number; prefixIds: number[]; padId: number; tokenizer: string; tokenizerConfig: string };
}

export const WEIGHT_MAP_FILE = 'weights.json';

export async function readWeightMap(skeleton: Source, signal?: AbortSignal): Promise<WeightMapFile> {
  if (!(await skeleton.exists(WEIGHT_MAP_FILE, signal))) {
    throw new CheckpointError('missing file: a skeleton folder holds the weight map (tools/py convert.skeleton makes one, docs/model-package.md §5)', skeleton.describe(WEIGHT_MAP_FILE));
  }
  const map = (await readJson(skeleton, WEIGHT_MAP_FILE, signal)) as WeightMapFile;
  if (!map || typeof map !== 'object' || map.format !== 1) {
    throw new CheckpointError(`format ${JSON.stringify((map as { format?: unknown })?.format)} is not supported (expected 1)`, skeleton.describe(WEIGHT_MAP_FILE));
  }
  return map;
}

/** The skeleton's variant for a text encoder precision: `int4`, `int8` or `fp32`. */
export function variantFor(map: WeightMapFile, bits: number, skeleton: Source): SkeletonVariant {
  const found = Object.values(map.variants).find((v) => v.textEncoderBits === bits);
  if (!found) {
    const have = Object.values(map.variants).map((v) => v.textEncoderBits).join(', ');
    throw new CheckpointError(`has no text encoder variant with ${bits}-bit weights (it has ${have}); make the skeleton with --text-encoder-bits ${bits}`, skeleton.describe(WEIGHT_MAP_FILE));
  }
  return found;
}

/** The published folders, by the `root` names of weights.json. */
export type Roots = Record<'hart' | 'qwen', Source>;

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return false;
}

/** §5.4: every config field the skeleton was made for. */
export async function checkConfigs(map: WeightMapFile, roots: Roots, signal?: AbortSignal): Promise<void> {
  const configs = new Map<string, Record<string, unknown>>();
  for (const check of map.configs) {
    const id = `${check.root}/${check.file}`;
    if (!configs.has(id)) {
      const source = roots[check.root];
      if (!(await source.exists(check.file, signal))) throw new CheckpointError('missing file', source.describe(check.file));
      configs.set(id, (await readJson(source, check.file, signal)) as Record<string, unknown>);
    }
    const config = configs.get(id)!;
    let value: unknown;
    if (check.field in config) value = config[check.field];
    else if ('default' in check) value = check.default;
    else throw new CheckpointError(`${check.file} lacks ${check.field}`);
    if (!jsonEqual(value, check.expected)) {
      throw new CheckpointError(`${check.file}: ${check.field} is ${JSON.stringify(value)}, this model expects ${JSON.stringify(check.expected)}`);
    }
  }
}

/** A published source, checked: its weights by the names the weight map uses. */
export interface OpenedSource {
  file: WeightFile;
  /** Weight map name -> stored name. */
  stored: Map<string, string>;
  read(key: string, signal?: AbortSignal): Promise<NDArray>;
}

const pythonTuple = (shape: readonly number[]) => (shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`);

function listing(items: string[], limit = 12): string {
  const shown = items.slice(0, limit).join(', ');
  return items.length > limit ? `${shown} (and ${items.length - limit} more)` : shown;
}

/** §5.3: finds, opens and checks one source; `onWarning` hears about non-EMA llm weights. */
export async function openSource(spec: SourceSpec, roots: Roots, onWarning?: (message: string) => void, signal?: AbortSignal): Promise<OpenedSource> {
  const folder = spec.folder ? subSource(roots[spec.root], spec.folder) : roots[spec.root];
  const path = await findWeights(folder, spec.files, signal);
  if (spec.warnUnlessPrefix && !path.startsWith(spec.warnUnlessPrefix)) {
    onWarning?.(`warning: no ${spec.files[0]} in ${folder.location}; using ${path}`);
  }
  const file = await openWeights(folder, path, signal);
  const basename = path.slice(path.lastIndexOf('/') + 1);
  const what = `${spec.what} (${basename})`;
  const search = (patterns: string[]) => patterns.map((p) => new RegExp(p));
  const matches = (patterns: RegExp[], key: string) => patterns.some((p) => p.test(key));

  for (const check of spec.checks ?? []) {
    const entry = file.entry(check.key);
    if (entry && elementCount(entry.shape) !== check.numel) {
      throw new CheckpointError(`${spec.what}: ${check.key} has ${elementCount(entry.shape)} positions but config.json's context_token and patch_nums give ${check.numel}`);
    }
  }
  const dropStored = search(spec.dropStored);
  const dropUnprefixed = search(spec.dropUnprefixed);
  const drop = search(spec.drop);
  let keys = file.keys().filter((k) => !matches(dropStored, k)).map((k) => [k, k] as [string, string]);
  const prefix = spec.prefix;
  if (prefix?.when === 'any') {
    if (keys.some(([k]) => k.startsWith(prefix.text))) keys = keys.filter(([k]) => k.startsWith(prefix.text) || !matches(dropUnprefixed, k));
    else keys = keys.map(([k, s]) => [prefix.text + k, s]);
  } else if (prefix?.when === 'each') {
    keys = keys.map(([k, s]) => [k.startsWith(prefix.text) ? k : prefix.text + k, s]);
  }
  keys = keys.filter(([k]) => !matches(drop, k));
  const stored = new Map(keys);

  // Names as the converter prints them: without the prefix its modules do not have.
  const shown = (k: string) => (prefix && k.startsWith(prefix.text) ? k.slice(prefix.text.length) : k);
  const expected = Object.entries(spec.keys);
  const missing = expected.filter(([k]) => !stored.has(k)).map(([k]) => shown(k));
  const unexpected = keys.filter(([k]) => !(k in spec.keys)).map(([k]) => shown(k));
  const wrong = expected.flatMap(([k, shape]) => {
    const name = stored.get(k);
    if (name === undefined) return [];
    const got = file.entry(name)!.shape;
    return jsonEqual(got, shape) ? [] : [`${shown(k)}: file ${pythonTuple(got)} vs model ${pythonTuple(shape)}`];
  });
  const problems = [];
  if (missing.length) problems.push(`missing keys: ${listing(missing)}`);
  if (unexpected.length) problems.push(`unexpected keys: ${listing(unexpected)}`);
  if (wrong.length) problems.push(`shape mismatch: ${listing(wrong)}`);
  if (problems.length) throw new CheckpointError(`${what}: ${problems.join('; ')}`);

  return {
    file,
    stored,
    async read(key, readSignal) {
      const name = stored.get(key);
      if (name === undefined) throw new CheckpointError(`${what}: the weight map reads ${key}, which the source does not list`);
      return { dtype: 'float32', shape: [...file.entry(name)!.shape], data: await file.readFloat32(name, readSignal) };
    },
  };
}
