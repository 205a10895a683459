// `npm run bench -- --compare [--rounds N]`: the PyTorch reference (tools/py bench, a child
// process), the engine on onnxruntime-node and the engine on WASM, on the same model, prompt,
// settings and random draws. Each competitor makes one warm-up image, then the rounds interleave
// them (reference, node, wasm, reference, ...). A table goes to stderr; the last line of stdout
// is one JSON object with the medians, per-round ratios and per-stage medians.
//
// Threads: the reference runs torch.set_num_threads(--torch-threads, default 2) with one
// inter-op thread, OMP_WAIT_POLICY=PASSIVE and OPENBLAS_NUM_THREADS=1; onnxruntime-node runs
// with its default intra-op pool (one thread per core) without spinning; WASM runs with
// onnxruntime-web's ort.env.wasm.numThreads as it stands (reported in the JSON).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { loadEngine, type Engine, type InjectedDraws, type SamplingSettings, type StageTimings } from '../engine/index';
import { createFsIO, importNodeOrt } from '../engine/node';

export type Competitor = 'torch' | 'node' | 'wasm';
type Stages = Record<keyof StageTimings, number>;

/** Timings that only editing runs (vary, detail prompt, image to image) fill. */
const EDITING_STAGES = new Set<keyof StageTimings>(['prefix', 'reusedScales', 'encoder']);

export interface CompareOptions {
  root: string;
  model: string;
  /** A checkpoint path or random:CONFIG:SEED; by default derived from the package. */
  reference?: string;
  prompt?: string;
  seed: number;
  rounds: number;
  torchThreads: number;
  log: (line: string) => void;
}

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** The default reference of a package: the untrained export's own recipe, else the shapes checkpoint. */
export function defaultReference(root: string, manifest: { name?: string; description?: string }): string {
  const untrained = /Untrained random weights \(seed (\d+)\)/.exec(manifest.description ?? '');
  if (untrained && manifest.name?.startsWith('hart-')) return `random:${manifest.name.slice('hart-'.length)}:${untrained[1]}`;
  return path.join(root, 'checkpoints/hart-shapes-128.pt');
}

interface DrawEntry { offset: number; dtype: 'float64' | 'float32'; length: number }

export function readDraws(file: string, layout: Record<string, DrawEntry>): InjectedDraws {
  const bytes = readFileSync(file);
  const array = (name: string) => {
    const { offset, dtype, length } = layout[name];
    const copy = bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + length * (dtype === 'float64' ? 8 : 4));
    return dtype === 'float64' ? new Float64Array(copy) : new Float32Array(copy);
  };
  const series = (prefix: string) => Object.keys(layout).filter((n) => n.startsWith(`${prefix}.`)).sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1])).map(array);
  const gumbel = series('gumbelUniforms') as Float64Array[];
  const noise = series('diffusionNoise') as Float32Array[];
  return {
    tokenUniforms: series('tokenUniforms') as Float64Array[],
    ...(gumbel.length ? { gumbelUniforms: gumbel } : {}),
    ...(noise.length ? { diffusionNoise: noise } : {}),
  };
}

/** The reference process: one JSON line per command. */
class Reference {
  private readonly lines: Interface;
  private readonly pending: ((line: string) => void)[] = [];
  private stderr = '';
  private exited: string | null = null;

  constructor(private readonly child: ChildProcessWithoutNullStreams) {
    this.lines = createInterface({ input: child.stdout });
    this.lines.on('line', (line) => this.pending.shift()?.(line));
    child.stderr.on('data', (chunk) => (this.stderr += String(chunk)));
    child.on('exit', (code) => {
      this.exited = `the reference exited (${code}): ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`;
      for (const resolve of this.pending.splice(0)) resolve(JSON.stringify({ error: this.exited }));
    });
  }

  next(command?: string): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    const reply = new Promise<string>((resolve) => this.pending.push(resolve));
    if (command) this.child.stdin.write(`${command}\n`);
    return reply.then((line) => {
      const value = JSON.parse(line) as Record<string, unknown>;
      if (value.error) throw new Error(String(value.error));
      return value;
    });
  }

  close(): void {
    if (!this.exited) this.child.stdin.end('quit\n');
  }
}

function startReference(options: CompareOptions, reference: string, prompt: string, drawsFile: string): Reference {
  const child = spawn(path.join(options.root, 'tools/py'), ['bench', '--reference', reference, '--package', options.model,
    '--prompt', prompt, '--seed', String(options.seed), '--draws', drawsFile, '--threads', String(options.torchThreads)], {
    env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: String(options.torchThreads) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return new Reference(child);
}

function maxDifference(a: Uint8Array | Uint8ClampedArray, b: Uint8Array | Uint8ClampedArray): number {
  if (a.length !== b.length) return Infinity;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

function table(rows: [string, Stages][], stages: (keyof StageTimings)[]): string {
  const head = ['stage (median ms)', ...rows.map(([name]) => name)];
  const body = stages.map((s) => [s, ...rows.map(([, t]) => t[s].toFixed(1))]);
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((r) => r[i].length)));
  return [head, ...body].map((r) => r.map((c, i) => (i ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ')).join('\n');
}

export async function compare(options: CompareOptions): Promise<Record<string, unknown>> {
  const manifest = JSON.parse(readFileSync(path.join(options.model, 'manifest.json'), 'utf8')) as { name?: string; description?: string; examples?: string[] };
  const reference = options.reference ?? defaultReference(options.root, manifest);
  const prompt = options.prompt ?? manifest.examples?.[0] ?? 'a red circle on a blue background';
  const work = mkdtempSync(path.join(tmpdir(), 'hart-compare-'));
  const drawsFile = path.join(work, 'draws.bin');
  const torch = startReference(options, reference, prompt, drawsFile);
  const engines: Partial<Record<'node' | 'wasm', Engine>> = {};
  try {
    const ready = await torch.next();
    const settings = ready.settings as SamplingSettings;
    const draws = readDraws(drawsFile, ready.draws as Record<string, DrawEntry>);
    const ortWasm = await importNodeOrt('wasm');
    engines.node = await loadEngine(options.model, { ort: await importNodeOrt('cpu'), io: createFsIO(options.model), backend: 'cpu' });
    engines.wasm = await loadEngine(options.model, { ort: ortWasm, io: createFsIO(options.model), backend: 'wasm' });

    const samples: Record<Competitor, Stages[]> = { torch: [], node: [], wasm: [] };
    const pixels: Partial<Record<Competitor, Uint8Array | Uint8ClampedArray>> = {};
    const runOne = async (who: Competitor): Promise<Stages> => {
      if (who === 'torch') {
        const reply = await torch.next('run');
        pixels.torch = new Uint8Array(Buffer.from(String(reply.pixels), 'base64'));
        return reply.stages as Stages;
      }
      const result = await engines[who]!.generate({ prompt, seed: options.seed, settings }, { draws });
      pixels[who] = result.image.data;
      return { ...result.timings };
    };
    const order: Competitor[] = ['torch', 'node', 'wasm'];
    for (const who of order) {
      options.log(`warm-up: ${who}`);
      await runOne(who);
    }
    for (let r = 0; r < options.rounds; r++) {
      for (const who of order) samples[who].push(await runOne(who));
      options.log(`round ${r + 1}/${options.rounds}: ${order.map((w) => `${w} ${samples[w][r].total.toFixed(0)} ms`).join(', ')}`);
    }

    // Plain text to image: a vary's prefix steps and kept scales and an init image's encoder
    // do not happen, and the reference has no such stages either.
    const stageNames = (Object.keys(samples.node[0]) as (keyof StageTimings)[]).filter((s) => !EDITING_STAGES.has(s));
    const medians = Object.fromEntries(order.map((w) => [w, Object.fromEntries(stageNames.map((s) => [s, round1(median(samples[w].map((t) => t[s] ?? 0)))]))])) as Record<Competitor, Stages>;
    const perRound = (a: Competitor, b: Competitor) => samples[a].map((t, i) => round3(t.total / samples[b][i].total));
    const torchOverNode = perRound('torch', 'node');
    const wasmOverNode = perRound('wasm', 'node');
    options.log(table(order.map((w) => [w, medians[w]]), stageNames));
    const result = {
      model: engines.node.info.name,
      prompt,
      seed: options.seed,
      settings,
      rounds: options.rounds,
      same_draws: true,
      reference: reference.startsWith('random:') ? reference : path.relative(options.root, reference),
      threads: {
        torch: ready.threads,
        node: 'onnxruntime-node default intra-op pool (one per core), no spinning',
        wasm: (ortWasm.env.wasm as { numThreads?: number }).numThreads ?? null,
      },
      reference_torch_ms: medians.torch.total,
      engine_node_ms: medians.node.total,
      engine_wasm_ms: medians.wasm.total,
      ratio_torch_over_node: round3(median(torchOverNode)),
      ratio_wasm_over_node: round3(median(wasmOverNode)),
      ratios_per_round: { torch_over_node: torchOverNode, wasm_over_node: wasmOverNode },
      preview_overhead: round3(medians.node.preview / medians.node.total),
      max_pixel_difference: { torch_node: maxDifference(pixels.torch!, pixels.node!), node_wasm: maxDifference(pixels.node!, pixels.wasm!) },
      stages: medians,
    };
    options.log(`torch/node ${result.ratio_torch_over_node}x, wasm/node ${result.ratio_wasm_over_node}x, previews ${(result.preview_overhead * 100).toFixed(1)}% of node`);
    return result;
  } finally {
    torch.close();
    await engines.node?.dispose();
    await engines.wasm?.dispose();
    rmSync(work, { recursive: true, force: true });
  }
}
