// `npm run bench [-- --model DIR --backend cpu|wasm --runs N --prompt TEXT]`: loads a package,
// makes one warm-up image, then N timed images, and prints one JSON object with the median time
// of every stage (milliseconds).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadEngine, type StageTimings } from '../engine/index';
import { createFsIO, importNodeOrt } from '../engine/node';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

async function main(): Promise<void> {
  const model = path.resolve(option('model', path.join(root, 'public/models/hart-shapes')));
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
