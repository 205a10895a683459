// `npm run import`: the published HART checkpoint and its Qwen2 text encoder as a model package,
// without Python: a skeleton (graph files and weight map, docs/model-package.md §5) filled with
// the published weights, read from Hugging Face or from folders.
// Exit status as every tool here (failure.ts): 0 success, 2 what the user gave is wrong, 1 otherwise.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHttpSource, importPackage, isUrl, type Source } from '../engine/index';
import { describeFailure, UsageError } from './failure';
import { createFolderSink, createFsSource, importNodeOrt, nodeSha256Hasher } from '../engine/node';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEFAULT_SKELETON = path.join(ROOT, 'public/skeletons/hart-0.7b-1024px');

const USAGE = `Usage:
  npm run import -- --hart <url|dir> --qwen <url|dir> --out DIR [--fp16] [--text-encoder-bits 4|8|32] [--skeleton DIR]

  --hart URL|DIR        mit-han-lab/hart-0.7b-1024px: https://huggingface.co/mit-han-lab/hart-0.7b-1024px or a folder with llm/ and tokenizer/
  --qwen URL|DIR        the Qwen2 text encoder (config.json, weights, tokenizer.json, tokenizer_config.json)
  --out DIR             the package folder to write
  --fp16                the package has fp16 graph variants (the skeleton must have been made with --fp16)
  --text-encoder-bits N 4 (default), 8 or 32
  --skeleton DIR|URL    graph files and weight map (default public/skeletons/hart-0.7b-1024px)
  --help`;


export interface ImportArgs {
  hart: string;
  qwen: string;
  out: string;
  fp16: boolean;
  bits: 4 | 8 | 32;
  skeleton: string;
}

export function parseImportArgs(argv: string[]): ImportArgs | 'help' {
  const args: Partial<ImportArgs> = { fp16: false, bits: 4, skeleton: DEFAULT_SKELETON };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--help':
        return 'help';
      case '--hart':
        args.hart = value();
        break;
      case '--qwen':
        args.qwen = value();
        break;
      case '--out':
        args.out = value();
        break;
      case '--skeleton':
        args.skeleton = value();
        break;
      case '--fp16':
        args.fp16 = true;
        break;
      case '--text-encoder-bits': {
        const v = value();
        if (v !== '4' && v !== '8' && v !== '32') throw new UsageError(`--text-encoder-bits must be 4, 8 or 32, got ${v}`);
        args.bits = Number(v) as 4 | 8 | 32;
        break;
      }
      default:
        throw new UsageError(`unknown option ${flag} (see --help)`);
    }
  }
  for (const flag of ['hart', 'qwen', 'out'] as const) if (!args[flag]) throw new UsageError(`--${flag} is required (see --help)`);
  return args as ImportArgs;
}

function source(value: string): Source {
  return isUrl(value) ? createHttpSource(value) : createFsSource(value);
}

const formatBytes = (n: number) => n.toLocaleString('en-US');

async function main(argv: string[]): Promise<number> {
  let args: ImportArgs | 'help';
  try {
    args = parseImportArgs(argv);
  } catch (error) {
    process.stderr.write(`${describeFailure(error).line}\n`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const controller = new AbortController();
  const cancel = () => controller.abort();
  process.once('SIGINT', cancel);
  process.once('SIGTERM', cancel);
  const started = Date.now();
  try {
    const ort = await importNodeOrt('cpu');
    let lastLine = Date.now();
    const result = await importPackage({
      skeleton: source(args.skeleton),
      hart: source(args.hart),
      qwen: source(args.qwen),
      sink: createFolderSink(args.out),
      textEncoderBits: args.bits,
      fp16: args.fp16,
      ort,
      hasher: nodeSha256Hasher,
      signal: controller.signal,
      onLog: (line) => process.stderr.write(`${line}\n`),
      onProgress: ({ file, index, count, done, total }) => {
        const now = Date.now();
        // One line per file when it is complete, and every 10 s for a long one.
        if (done === total || now - lastLine > 10_000) {
          lastLine = now;
          const share = total ? ` (${Math.floor((100 * done) / total)}%)` : '';
          process.stderr.write(`[${index + 1}/${count}] ${file}: ${formatBytes(done)} of ${formatBytes(total)} bytes${done === total ? '' : share}\n`);
        }
      },
    });
    const total = result.files.reduce((n, f) => n + f.bytes, 0);
    process.stderr.write(`wrote ${path.resolve(args.out)}: ${result.files.length + 1} files, ${formatBytes(total)} bytes, in ${((Date.now() - started) / 1000).toFixed(1)} s (read ${formatBytes(result.bytesRead)} bytes)\n`);
    return 0;
  } catch (error) {
    const { status, line } = describeFailure(error);
    process.stderr.write(`${line}\n`);
    return status;
  } finally {
    process.off('SIGINT', cancel);
    process.off('SIGTERM', cancel);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
