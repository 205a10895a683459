// `npm run bench [-- --model DIR --backend cpu|wasm --runs N --prompt TEXT]`: loads a package,
// makes one warm-up image, then N timed images, and prints one JSON object with the median time
// of every stage (milliseconds).
// `npm run bench -- --compare [--rounds N --seed S --reference CHECKPOINT|random:CONFIG:SEED
// --torch-threads T --model DIR --prompt TEXT]`: the PyTorch reference, the engine on
// onnxruntime-node and on WASM side by side (compare.ts), a table on stderr and one JSON line.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadEngine, type StageTimings } from '../engine/index';
import { createFsIO, importNodeOrt } from '../engine/node';
import { compare, median } from './compare';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const model = path.resolve(option('model', path.join(root, 'public/models/hart-shapes')));
  if (process.argv.includes('--compare')) {
    const prompt = option('prompt', '');
    const reference = option('reference', '');
    const result = await compare({
      root,
      model,
      reference: !reference ? undefined : reference.startsWith('random:') ? reference : path.resolve(reference),
      prompt: prompt || undefined,
      seed: Number(option('seed', '0')),
      rounds: Math.max(1, Number(option('rounds', '5'))),
      torchThreads: Math.max(1, Number(option('torch-threads', '2'))),
      log: (line) => console.error(line),
    });
    console.log(JSON.stringify(result));
    return;
  }
  const backend = option('backend', 'cpu');
  const runs = Math.max(1, Number(option('runs', '3')));
  if (backend !== 'cpu' && backend !== 'wasm') throw new Error(`--backend ${backend}: expected cpu or wasm`);
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

main().catch((error) => {
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
