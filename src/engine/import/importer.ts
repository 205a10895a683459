// The import: a skeleton (docs/model-package.md §5) plus the published HART and Qwen2 folders
// give the package the Python converter writes, byte for byte (the preview map excepted when it
// is fitted here: see previewFit.ts). Graph files are copied, every weight file is written
// tensor by tensor from its weight map, never the whole checkpoint in memory; the manifest last.
import type { Ort } from '../backend';
import { CancelledError, CheckpointError, LOADING_CANCELLED, throwIfCancelled } from '../errors';
import { MANIFEST_FILE, parseManifest } from '../manifest';
import { readTables } from '../modelPackage';
import type { GraphSource } from '../session';
import type { BackendName } from '../types';
import { fillTemplate, templateFiles, type FilledFile } from './manifestTemplate';
import { fitPreview, type PreviewMap } from './previewFit';
import { sha256Hasher, type Hasher, type Sink } from './sink';
import { checkConfigs, openSource, readWeightMap, variantFor, WEIGHT_MAP_FILE, type OpenedSource, type Roots, type Segment, type WeightFileMap } from './skeleton';
import { readAll, readJson, type Source } from './source';
import { padTokenId, systemPromptIds } from './textIds';
import { WeightMapEvaluator, type Expr, type NDArray } from './weightMap';

export interface ImportProgress {
  /** The package file being written. */
  file: string;
  /** Its index among the package's files, and their count (the manifest is the last). */
  index: number;
  count: number;
  /** Bytes of this file written so far, of its total. */
  done: number;
  total: number;
}

export interface ImportOptions {
  skeleton: Source;
  /** `mit-han-lab/hart-0.7b-1024px`: `llm/` and `tokenizer/`. */
  hart: Source;
  /** The Qwen2 text encoder folder. */
  qwen: Source;
  sink: Sink;
  /** The text encoder's weights: 4 (default), 8 or 32 bits. */
  textEncoderBits?: 4 | 8 | 32;
  /** Whether the package gets fp16 graph variants: must be what the skeleton was made with. */
  fp16?: boolean;
  /** The preview map; without it, it is fitted against the package's decoder with `ort`. */
  preview?: PreviewMap;
  ort?: Ort;
  backend?: BackendName;
  hasher?: () => Hasher;
  onProgress?: (progress: ImportProgress) => void;
  /** Lines for people (the configuration read, warnings). */
  onLog?: (line: string) => void;
  signal?: AbortSignal;
}

export interface ImportResult {
  /** manifest.json as written. */
  manifest: string;
  files: { path: string; bytes: number; sha256: string }[];
  /** Bytes read from the published folders and the skeleton, and written. */
  bytesRead: number;
  bytesWritten: number;
  /** Files a previous import had left complete in the sink, kept as they were. */
  kept: string[];
}

const COPY_CHUNK = 16 << 20;

function hasPreview(expr: Expr): boolean {
  if ('source' in expr) return false;
  if (expr.op === 'preview') return true;
  return Object.values(expr).some((v) => (Array.isArray(v) ? v.some((x) => x && typeof x === 'object' && hasPreview(x as Expr)) : v && typeof v === 'object' && hasPreview(v as Expr)));
}

/** Counts the bytes a source hands out. */
function counted(source: Source, tally: { read: number }): Source {
  return {
    ...source,
    location: source.location,
    async read(path, start, end, signal) {
      const bytes = await source.read(path, start, end, signal);
      tally.read += bytes.length;
      return bytes;
    },
  };
}

export async function importPackage(options: ImportOptions): Promise<ImportResult> {
  const { sink, signal } = options;
  const tally = { read: 0, written: 0 };
  const skeleton = counted(options.skeleton, tally);
  const roots: Roots = { hart: counted(options.hart, tally), qwen: counted(options.qwen, tally) };
  const log = options.onLog ?? (() => undefined);
  const hasher = options.hasher ?? sha256Hasher;
  const bits = options.textEncoderBits ?? 4;

  const map = await readWeightMap(skeleton, signal);
  const variant = variantFor(map, bits, skeleton);
  if (options.fp16 !== undefined && options.fp16 !== map.options.fp16) {
    throw new CheckpointError(`was made ${map.options.fp16 ? 'with' : 'without'} --fp16; make a skeleton ${options.fp16 ? 'with' : 'without'} it for this package`, skeleton.describe(WEIGHT_MAP_FILE));
  }
  await checkConfigs(map, roots, signal);

  // The text encoder's fixed ids.
  const qwen = roots.qwen;
  const tokenizerJson = (await readJson(qwen, map.text.tokenizer, signal)) as object;
  const prefixIds = systemPromptIds(tokenizerJson, map.text.systemPrompt, map.text.window);
  if (prefixIds.length !== map.text.prefixIds.length) {
    throw new CheckpointError(`${qwen.describe(map.text.tokenizer)}: the system prompt is ${prefixIds.length} tokens, the skeleton was made for ${map.text.prefixIds.length} (a different tokenizer)`);
  }
  const tokenizerConfig = (await qwen.exists(map.text.tokenizerConfig, signal)) ? ((await readJson(qwen, map.text.tokenizerConfig, signal)) as Record<string, unknown>) : null;
  const padId = padTokenId(tokenizerJson, tokenizerConfig, qwen.location);

  // The published weights, checked before anything is written.
  const sources = new Map<string, OpenedSource>();
  for (const [name, spec] of Object.entries(map.sources)) {
    log(`reading ${roots[spec.root].describe(spec.folder)}`);
    sources.set(name, await openSource(spec, roots, log, signal));
  }

  const template = new TextDecoder().decode(await readAll(skeleton, variant.manifest, signal));
  const entries = templateFiles(template, skeleton.describe(variant.manifest));
  const count = entries.length + 1;
  const written = new Map<string, FilledFile>();
  let previewMap: PreviewMap | undefined = options.preview;

  const evaluator = new WeightMapEvaluator({
    async source(name, key, sourceSignal) {
      const source = sources.get(name);
      if (!source) throw new CheckpointError(`weight map: unknown source ${name}`);
      return source.read(key, sourceSignal);
    },
    constants: (offset, length, constSignal) => skeleton.read('constants.bin', offset, offset + length, constSignal),
    async preview() {
      previewMap ??= await fitPreviewFromSink();
      const cv = previewMap.weight.length / 3;
      return {
        weight: { dtype: 'float32', shape: [3, cv], data: previewMap.weight } as NDArray,
        bias: { dtype: 'float32', shape: [3], data: previewMap.bias } as NDArray,
      };
    },
  }, 4);

  interface Writer {
    write(chunk: Uint8Array): Promise<void>;
    finish(): Promise<void>;
    abort(): Promise<void>;
  }

  /** A package file being written: hashed and counted as it goes, visible once finished. */
  async function openWriter(index: number, path: string, total: number): Promise<Writer> {
    throwIfCancelled(signal, LOADING_CANCELLED);
    const file = await sink.create(path, total);
    const hash = hasher();
    let done = 0;
    options.onProgress?.({ file: path, index, count, done, total });
    return {
      async write(chunk) {
        throwIfCancelled(signal, LOADING_CANCELLED);
        hash.update(chunk);
        await file.write(chunk);
        done += chunk.length;
        tally.written += chunk.length;
        options.onProgress?.({ file: path, index, count, done, total });
      },
      async finish() {
        if (done !== total) throw new CheckpointError(`${path}: wrote ${done} bytes, expected ${total}`);
        const filled = { bytes: done, sha256: hash.hex() };
        await file.close(filled);
        written.set(path, filled);
      },
      abort: () => file.abort(),
    };
  }

  async function writeFile(index: number, path: string, total: number, fill: (write: (chunk: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
    const writer = await openWriter(index, path, total);
    try {
      await fill((chunk) => writer.write(chunk));
      await writer.finish();
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  async function copyFile(index: number, path: string, from: Source, fromPath: string): Promise<void> {
    const size = await from.size(fromPath, signal);
    await writeFile(index, path, size, async (write) => {
      for (let at = 0; at < size; at += COPY_CHUNK) await write(await from.read(fromPath, at, Math.min(size, at + COPY_CHUNK), signal));
    });
  }

  /**
   * Weight files written together, each front to back: a graph's fp32 and fp16 data (all their
   * shards) read the same published tensors, so the next segment is, where possible, one whose
   * tensors were just read: each tensor is then read once for both files, not once per file.
   */
  async function writeWeightGroup(group: { index: number; path: string; spec: WeightFileMap }[]): Promise<void> {
    const files: { path: string; spec: WeightFileMap; queue: Segment[]; at: number; writer: Writer }[] = [];
    try {
      for (const { index, path, spec } of group) {
        const queue = [...spec.segments].sort((a, b) => a.offset - b.offset);
        files.push({ path, spec, queue, at: 0, writer: await openWriter(index, path, spec.bytes) });
      }
      for (;;) {
        const waiting = files.filter((f) => f.queue.length);
        if (!waiting.length) break;
        const file = waiting.find((f) => evaluator.holds(f.queue[0].expr)) ?? waiting[0];
        const segment = file.queue.shift()!;
        if (segment.offset < file.at) throw new CheckpointError(`weight map: ${file.path} segments overlap at ${segment.name}`);
        if (segment.offset > file.at) await file.writer.write(new Uint8Array(segment.offset - file.at)); // alignment padding
        let bytes: Uint8Array;
        try {
          bytes = await evaluator.bytes(segment.expr, segment.dtype, segment.shape, signal);
        } catch (error) {
          if (error instanceof CancelledError || !(error instanceof CheckpointError)) throw error;
          throw new CheckpointError(`${file.path}: ${segment.name}: ${error.message}`);
        }
        if (bytes.length !== segment.length) throw new CheckpointError(`weight map: ${file.path}: ${segment.name} is ${bytes.length} bytes, not ${segment.length}`);
        await file.writer.write(bytes);
        file.at = segment.offset + segment.length;
      }
      for (const file of files) {
        if (file.spec.bytes > file.at) await file.writer.write(new Uint8Array(file.spec.bytes - file.at));
        await file.writer.finish();
      }
    } catch (error) {
      for (const file of files) if (!written.has(file.path)) await file.writer.abort();
      throw error;
    } finally {
      evaluator.clear();
    }
  }

  async function fitPreviewFromSink(): Promise<PreviewMap> {
    if (!options.ort) throw new CheckpointError('the preview map needs onnxruntime to fit it (or a given map)');
    log('fitting the preview map against the decoder');
    // The template with placeholders for what is not written yet: enough for the model's shape and file names.
    const placeholder = entries.map((e) => written.get(e.path) ?? { bytes: e.bytes ?? 0, sha256: e.sha256 ?? '0'.repeat(64) });
    const manifest = parseManifest(JSON.parse(fillTemplate(template, prefixIds, padId, placeholder, variant.manifest)));
    const files = new Map<string, Uint8Array>();
    for (const table of Object.values(manifest.tables)) if (!files.has(table.path)) files.set(table.path, await sink.read(table.path));
    const graph = async (name: 'decoder' | 'scaleUpdate'): Promise<GraphSource> => {
      const v = manifest.graphs[name].fp32;
      const externalData = [];
      for (const path of v.externalData ?? []) externalData.push({ path, data: await sink.read(path) });
      return { path: v.path, bytes: await sink.read(v.path), externalData };
    };
    return fitPreview({ ort: options.ort, backend: options.backend, model: manifest.model, tables: readTables(manifest, files), decoder: await graph('decoder'), scaleUpdate: await graph('scaleUpdate'), signal });
  }

  // Files in the template's order, a graph's weight files (fp32 and fp16, every shard) as one
  // group at the first of them; those that need the preview map wait until the decoder,
  // scaleUpdate and tables it is fitted against are written.
  const weightsOf = (path: string): WeightFileMap | undefined => variant.files[path] ?? map.files[path];
  const groupKey = (path: string) => path.replace('.fp16.onnx', '.onnx').replace(/\.data\d+$/, '.data');
  const needsPreview = (spec: WeightFileMap) => spec.segments.some((s) => hasPreview(s.expr));
  const deferred: { index: number; path: string; spec: WeightFileMap }[] = [];

  // A retried import keeps the files the last one finished: the size they must have is known
  // from the weight map (or the file they copy), the hash from when they were written. Their
  // published tensors are then never read. The manifest is always written anew.
  const kept: string[] = [];
  if (sink.complete) {
    for (const [index, entry] of entries.entries()) {
      const done = await sink.complete(entry.path);
      if (!done) continue;
      const weights = weightsOf(entry.path);
      const size = entry.bytes ?? weights?.bytes ?? (entry.path in variant.copy ? await skeleton.size(variant.copy[entry.path], signal) : entry.path === map.text.tokenizer ? await qwen.size(map.text.tokenizer, signal) : -1);
      if (done.bytes !== size || (entry.sha256 !== null && entry.sha256 !== done.sha256)) continue;
      written.set(entry.path, done);
      kept.push(entry.path);
      options.onProgress?.({ file: entry.path, index, count, done: done.bytes, total: done.bytes });
    }
    if (kept.length) log(`kept ${kept.length} of ${entries.length} files a previous import finished`);
  }

  for (const [index, entry] of entries.entries()) {
    const path = entry.path;
    const weights = weightsOf(path);
    if (written.has(path)) continue;
    if (path in variant.copy) await copyFile(index, path, skeleton, variant.copy[path]);
    else if (weights && needsPreview(weights)) deferred.push({ index, path, spec: weights });
    else if (weights) {
      const group = entries.flatMap((e, i) => {
        const spec = weightsOf(e.path);
        return spec && !needsPreview(spec) && !written.has(e.path) && groupKey(e.path) === groupKey(path) ? [{ index: i, path: e.path, spec }] : [];
      });
      await writeWeightGroup(group);
    } else if (path === map.text.tokenizer) await copyFile(index, path, qwen, map.text.tokenizer);
    else throw new CheckpointError(`lists ${path}, which the weight map does not say how to write`, skeleton.describe(variant.manifest));
  }
  if (deferred.length) await writeWeightGroup(deferred);

  const filled = entries.map((e) => written.get(e.path)!);
  for (const [i, e] of entries.entries()) {
    if (e.bytes !== null && e.bytes !== filled[i].bytes) throw new CheckpointError(`${e.path}: wrote ${filled[i].bytes} bytes, the template says ${e.bytes}`);
    if (e.sha256 !== null && e.sha256 !== filled[i].sha256) throw new CheckpointError(`${e.path}: its sha256 differs from the template's (a skeleton file was changed)`);
  }
  const manifest = fillTemplate(template, prefixIds, padId, filled, variant.manifest);
  const manifestBytes = new TextEncoder().encode(manifest);
  await writeFile(entries.length, MANIFEST_FILE, manifestBytes.length, (write) => write(manifestBytes));
  return {
    manifest,
    files: entries.map((e, i) => ({ path: e.path, ...filled[i] })),
    bytesRead: tally.read,
    bytesWritten: tally.written,
    kept,
  };
}
