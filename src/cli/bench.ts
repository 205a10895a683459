// `npm run bench [-- --model DIR --backend cpu|wasm --runs N --prompt TEXT]`: loads a package,
// makes one warm-up image, then N timed images, and prints one JSON object with the median time
// of every stage (milliseconds). Exit status as generate.ts: 2 for a bad command line or package, 1 otherwise.
// `npm run bench -- --compare [--rounds N --seed S --reference CHECKPOINT|random:CONFIG:SEED
// --torch-threads T --model DIR --prompt TEXT]`: the PyTorch reference, the engine on
// onnxruntime-node and on WASM side by side (compare.ts), a table on stderr and one JSON line.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadEngine, MAX_SEED, type StageTimings } from '../engine/index';
import { createFsIO, importNodeOrt } from '../engine/node';
import { compare, median } from './compare';
import { describeFailure, UsageError } from './failure';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The flags that take a value, and what the value must be. */
const VALUE_FLAGS = {
  model: 'folder',
  backend: 'backend',
  runs: 'count',
  prompt: 'text',
  rounds: 'count',
  seed: 'seed',
  reference: 'text',
  'torch-threads': 'count',
} as const;
type ValueFlag = keyof typeof VALUE_FLAGS;

/** The command line, checked before any work: a bad one exits 2 with one line naming the flag. */
export function parseBenchArgs(argv: string[]): { values: Partial<Record<ValueFlag, string>>; compare: boolean } {
  const values: Partial<Record<ValueFlag, string>> = {};
  let compare = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--compare') {
      compare = true;
      continue;
    }
    const name = arg.slice(2) as ValueFlag;
    if (!arg.startsWith('--') || !(name in VALUE_FLAGS)) throw new UsageError(`Unknown argument ${arg}.`);
    const value = argv[++i];
    if (value === undefined || value.startsWith('--')) throw new UsageError(`${arg} needs a value.`);
    const kind = VALUE_FLAGS[name];
    if (kind === 'count' && !(/^\d+$/.test(value) && Number(value) >= 1)) throw new UsageError(`${arg} ${value}: expected a whole number of at least 1.`);
    if (kind === 'seed' && !(/^\d+$/.test(value) && Number(value) <= MAX_SEED)) throw new UsageError(`${arg} ${value}: expected a whole number from 0 to ${MAX_SEED}.`);
    if (kind === 'backend' && value !== 'cpu' && value !== 'wasm') throw new UsageError(`${arg} ${value}: expected cpu or wasm.`);
    if (kind === 'folder') {
      if (!existsSync(value) || !statSync(value).isDirectory()) throw new UsageError(`${arg} ${value}: no such folder.`);
      if (!existsSync(path.join(value, 'manifest.json'))) throw new UsageError(`${arg} ${value}: the folder has no manifest.json.`);
    }
    values[name] = value;
  }
  return { values, compare };
}

async function main(): Promise<void> {
  const { values, compare: comparing } = parseBenchArgs(process.argv.slice(2));
  const option = (name: ValueFlag, fallback: string) => values[name] ?? fallback;
  const model = path.resolve(option('model', path.join(root, 'public/models/hart-shapes')));
  if (comparing) {
    const prompt = option('prompt', '');
    const reference = option('reference', '');
    const result = await compare({
      root,
      model,
      reference: !reference ? undefined : reference.startsWith('random:') ? reference : path.resolve(reference),
      prompt: prompt || undefined,
      seed: Number(option('seed', '0')),
      rounds: Number(option('rounds', '5')),
      torchThreads: Number(option('torch-threads', '2')),
      log: (line) => console.error(line),
    });
    console.log(JSON.stringify(result));
    return;
  }
  const backend = option('backend', 'cpu') as 'cpu' | 'wasm';
  const runs = Number(option('runs', '3'));
  const ort = await importNodeOrt(backend);

  const loadStarted = performance.now();
  const engine = await loadEngine(model, { ort, io: createFsIO(model), backend });
  const loadMs = performance.now() - loadStarted;
  const prompt = option('prompt', engine.info.examples[0] ?? 'a red circle on a blue background');
  try {
    await engine.generate({ prompt, seed: 0 });
    const samples: StageTimings[] = [];
    for (let i = 0; i < runs; i++) samples.push((await engine.generate({ prompt, seed: i + 1 })).timings);
    const stages = Object.keys(samples[0]) as (keyof StageTimings)[];
    const timings = Object.fromEntries(stages.map((s) => [s, Math.round(median(samples.map((t) => t[s])) * 10) / 10]));
    console.log(JSON.stringify({ model: engine.info.name, backend: engine.info.backend.backend, runs, loadMs: Math.round(loadMs), prompt, medianMs: timings }, null, 2));
  } finally {
    await engine.dispose();
  }
}

const invokedDirectly = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  main().catch((error) => {
    const { status, line } = describeFailure(error);
    console.error(line);
    process.exit(status);
  });
}
