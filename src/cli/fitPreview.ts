// `node --import tsx src/cli/fitPreview.ts --package DIR [--count N] [--seed S] [--backend cpu|wasm]`:
// fits the preview graph's latent -> RGB map against the package's decoder (engine/import/previewFit.ts)
// and prints it as one JSON line {"weight": [[…Cv…] × 3], "bias": [r, g, b]} (float32 values), for
// the Python converter, which writes the same map into its packages.
// Exit status as every tool here (failure.ts): 0 success, 2 bad arguments or package, 1 otherwise.
import { fitPreviewOfPackage } from '../engine/index';
import { createFsIO, importNodeOrt } from '../engine/node';
import { describeFailure, UsageError } from './failure';

const USAGE = 'Usage: node --import tsx src/cli/fitPreview.ts --package DIR [--count N] [--seed S] [--backend cpu|wasm]';

function parse(argv: string[]): { pkg: string; count?: number; seed: number; backend: 'cpu' | 'wasm' } {
  const out: { pkg?: string; count?: number; seed: number; backend: 'cpu' | 'wasm' } = { seed: 0, backend: 'cpu' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    const whole = (v: string) => {
      if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a whole number, got ${v}`);
      return Number(v);
    };
    if (flag === '--package') out.pkg = value();
    else if (flag === '--count') out.count = whole(value());
    else if (flag === '--seed') out.seed = whole(value());
    else if (flag === '--backend') {
      const v = value();
      if (v !== 'cpu' && v !== 'wasm') throw new UsageError(`--backend must be cpu or wasm, got ${v}`);
      out.backend = v;
    } else throw new UsageError(`unknown option ${flag}\n${USAGE}`);
  }
  if (!out.pkg) throw new UsageError(`--package is required\n${USAGE}`);
  if (out.count === 0) throw new UsageError('--count must be at least 1');
  return { ...out, pkg: out.pkg };
}

async function main(): Promise<number> {
  let args;
  try {
    args = parse(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${describeFailure(error).line}\n`);
    return 2;
  }
  try {
    const ort = await importNodeOrt(args.backend);
    const map = await fitPreviewOfPackage(createFsIO(args.pkg), ort, { backend: args.backend, count: args.count, seed: args.seed });
    const cv = map.weight.length / 3;
    const weight = [0, 1, 2].map((ch) => Array.from(map.weight.subarray(ch * cv, (ch + 1) * cv)));
    process.stdout.write(`${JSON.stringify({ weight, bias: Array.from(map.bias) })}\n`);
    return 0;
  } catch (error) {
    const { status, line } = describeFailure(error);
    process.stderr.write(`${line}\n`);
    return status;
  }
}

process.exitCode = await main();
