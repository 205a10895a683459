// `npm run generate`: text → PNG from the command line, with the same engine as the browser.
// Exit status: 0 success, 2 when what the user gave is wrong, 1 otherwise (src/cli/failure.ts).
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import {
  checkImageFromScale,
  checkSeed,
  checkSettings,
  createFetchIO,
  describeRange,
  encodePng,
  isTopKSchedule,
  loadEngine,
  MAX_SEED,
  provenanceText,
  quotePrompt,
  imageFromScaleRange,
  scaleFromRange,
  type GenerateEvent,
  type InitImage,
  type ImagePixels,
  type LoadOptions,
  type SamplingSettings,
  type TopK,
} from '../engine/index';
import { createFsIO, importNodeOrt } from '../engine/node';
import { describeFailure, UsageError } from './failure';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEFAULT_MODEL = path.join(ROOT, 'public/models/hart-shapes');

const USAGE = `Usage:
  npm run generate -- --prompt "a red circle on a blue background" --seed 7 --out out.png
  npm run generate -- --prompts prompts.txt --out-dir images/ [--seed 7]

Options:
  --prompt TEXT         the image to generate
  --prompts FILE        one prompt a line (blank lines are skipped); writes 000.png, 001.png, … to --out-dir
  --seed N              random seed (default 0)
  --out FILE            output PNG for --prompt (default out.png)
  --out-dir DIR         output folder for --prompts
  --model DIR|URL       model package (default public/models/hart-shapes)
  --cfg X  --top-k N  --top-p X  --temperature X
  --top-k K0,K1@S1,…    a top-k per scale: K0 from scale 0, K1 from scale S1 on, … (scales count
                        from 0); HART's own is 600,300@7 (600 on scales 0–6, 300 from scale 7)
  --guided-scales N     guidance on the first N scales only (0: every scale)
  --negative TEXT       what guidance steers away from (instead of the empty condition)
  --detail-prompt TEXT --detail-from K
                        a second prompt for scales K…last (1-based, as "Scale k of K"); the
                        main prompt draws scales 1…K−1
  --init-image FILE --from-scale K
                        start from a PNG image (centre-cropped and resized to the model's
                        size): scales 1…K−1 are the image's, K…last are drawn under the prompt;
                        K = last + 1 keeps every scale (the image as the tokenizer rebuilds it)
  --smooth / --no-smooth   Gumbel smoothing
  --residual / --no-residual   residual diffusion on the last scale (--no-residual: discrete only)
  --previews DIR        write one PNG per scale
  --json                print one JSON line per image with the timings per stage
  --backend cpu|wasm    onnxruntime-node (cpu, default) or onnxruntime-web's wasm build
  --help`;

export interface CliOptions {
  prompt?: string;
  prompts?: string;
  seed: number;
  out: string;
  outDir?: string;
  model: string;
  settings: Partial<SamplingSettings>;
  negative?: string;
  detailPrompt?: string;
  detailFrom?: number;
  initImage?: string;
  fromScale?: number;
  previews?: string;
  json: boolean;
  backend: 'cpu' | 'wasm';
  help: boolean;
}

function numberArg(flag: string, text: string | undefined, integer = false): number {
  if (text === undefined || text.startsWith('--')) throw new UsageError(`${flag} needs a value.`);
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new UsageError(`${flag} ${text}: expected ${integer ? 'a whole number' : 'a number'}.`);
  }
  return value;
}

/**
 * `--top-k`: a whole number for every scale, or a schedule "K0,K1@S1,K2@S2,…": K0 from scale 0
 * (an optional "@0"), each further K from its 0-based scale S on, the scales increasing.
 */
export function topKArg(flag: string, text: string): TopK {
  if (!text.includes(',') && !text.includes('@')) {
    const k = Number(text);
    if (text.trim() !== '' && Number.isInteger(k)) return k;
  } else {
    const parts = text.split(',').map((part) => /^\s*(\d+)\s*(?:@\s*(\d+)\s*)?$/.exec(part));
    if (parts.every((m) => m !== null) && parts.slice(1).every((m) => m![2] !== undefined)) {
      const schedule = { values: parts.map((m) => Number(m![1])), from: parts.map((m) => Number(m![2] ?? 0)) };
      if (isTopKSchedule(schedule)) return schedule;
      throw new UsageError(`${flag} ${text}: the first k applies from scale 0 and each later scale after @ must be larger than the one before.`);
    }
  }
  throw new UsageError(`${flag} ${text}: expected a whole number, or a schedule like 600,300@7 (600 before scale 7, 300 from scale 7 on; scales count from 0).`);
}

/** A seed as typed: digits past 2^53 − 1 would round to another number, so they are refused as typed. */
function seedArg(text: string): number {
  if (/^\s*\d+\s*$/.test(text) && BigInt(text.trim()) > BigInt(MAX_SEED)) {
    throw new UsageError(`--seed ${text.trim()}: the largest seed is ${MAX_SEED} (2^53 − 1).`);
  }
  return numberArg('--seed', text, true);
}

export function parseArgs(argv: string[]): CliOptions {
  const options: CliOptions = { seed: 0, out: 'out.png', model: DEFAULT_MODEL, settings: {}, json: false, backend: 'cpu', help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new UsageError(`${flag} needs a value.`);
      return v;
    };
    switch (flag) {
      case '--prompt': options.prompt = value(); break;
      case '--prompts': options.prompts = value(); break;
      case '--seed': options.seed = seedArg(value()); break;
      case '--out': options.out = value(); break;
      case '--out-dir': options.outDir = value(); break;
      case '--model': options.model = value(); break;
      case '--cfg': options.settings.cfg = numberArg(flag, value()); break;
      case '--top-k': options.settings.topK = topKArg(flag, value()); break;
      case '--top-p': options.settings.topP = numberArg(flag, value()); break;
      case '--temperature': options.settings.temperature = numberArg(flag, value()); break;
      case '--guided-scales': options.settings.guidedScales = numberArg(flag, value(), true); break;
      case '--negative': options.negative = value(); break;
      case '--detail-prompt': options.detailPrompt = value(); break;
      case '--detail-from': options.detailFrom = numberArg(flag, value(), true); break;
      case '--init-image': options.initImage = value(); break;
      case '--from-scale': options.fromScale = numberArg(flag, value(), true); break;
      case '--smooth': options.settings.smooth = true; break;
      case '--no-smooth': options.settings.smooth = false; break;
      case '--residual': options.settings.residual = true; break;
      case '--no-residual': options.settings.residual = false; break;
      case '--previews': options.previews = value(); break;
      case '--json': options.json = true; break;
      case '--backend': {
        const backend = value();
        if (backend !== 'cpu' && backend !== 'wasm') throw new UsageError(`--backend ${backend}: expected cpu or wasm.`);
        options.backend = backend;
        break;
      }
      case '--help': case '-h': options.help = true; break;
      default:
        throw new UsageError(`Unknown argument ${arg} (see --help).`);
    }
  }
  if (options.help) return options;
  if (options.prompt !== undefined && options.prompts !== undefined) throw new UsageError('Give either --prompt or --prompts, not both.');
  if (options.prompt === undefined && options.prompts === undefined) throw new UsageError('Missing --prompt TEXT (or --prompts FILE); see --help.');
  if (options.prompts !== undefined && options.outDir === undefined) throw new UsageError('--prompts needs --out-dir DIR.');
  if (options.detailFrom !== undefined && options.detailPrompt === undefined) throw new UsageError(`--detail-from ${options.detailFrom} needs --detail-prompt TEXT.`);
  if (options.detailPrompt !== undefined && options.detailFrom === undefined) throw new UsageError('--detail-prompt needs --detail-from K: the scale it draws from (1-based).');
  // The upper bound is the model's scale count, checked once it is loaded.
  const firstScale = { ...scaleFromRange(1), max: undefined };
  if (options.detailFrom !== undefined && options.detailFrom < firstScale.min) throw new UsageError(`--detail-from ${options.detailFrom}: expected ${describeRange(firstScale)} (scales count from 1).`);
  if (options.initImage !== undefined && options.fromScale === undefined) {
    throw new UsageError('--init-image needs --from-scale K (the first scale drawn under the prompt) or --mask.');
  }
  if (options.fromScale !== undefined && options.initImage === undefined) throw new UsageError(`--from-scale ${options.fromScale} needs --init-image FILE: the image the earlier scales come from.`);
  if (options.fromScale !== undefined && options.fromScale < firstScale.min) throw new UsageError(`--from-scale ${options.fromScale}: expected ${describeRange(firstScale)} (scales count from 1).`);
  // The engine's own checks, before the model loads: a bad seed or setting costs no load.
  checkSeed(options.seed);
  checkSettings(options.settings);
  return options;
}

/**
 * Text as it may appear on a terminal or in a PNG text chunk: control characters (NUL, ESC, BEL,
 * DEL, C1) removed, tabs and line breaks as spaces. Prompts pass through it on the way in, and
 * every line the CLI prints on stderr on the way out.
 */
export function withoutControlCharacters(text: string): string {
  return text.replace(/[\t\n\r\v\f]/g, ' ').replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
}

function readPrompts(file: string): string[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new UsageError(`--prompts ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}.`);
  }
  if (bytes.includes(0)) throw new UsageError(`--prompts ${file}: not a text file (it holds NUL bytes).`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(`--prompts ${file}: not a text file (it is not valid UTF-8).`);
  }
  const prompts = text.replace(/^\uFEFF/, '').split(/\r?\n/).map((line) => withoutControlCharacters(line).trim()).filter(Boolean);
  if (prompts.length === 0) throw new UsageError(`--prompts ${file}: the file has no prompts.`);
  return prompts;
}

/**
 * `--init-image`: a PNG as RGBA bytes (pngjs turns every PNG colour type and depth into those).
 * JPEG is refused rather than decoded: a decoder would be a dependency for what one conversion
 * to PNG does.
 */
export function readInitImage(file: string): InitImage {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`--init-image ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder' : (error as Error).message}.`);
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) throw new UsageError(`--init-image ${file}: JPEG is not supported; convert it to PNG.`);
  let png: PNG;
  try {
    png = PNG.sync.read(bytes);
  } catch (error) {
    throw new UsageError(`--init-image ${file}: not a readable PNG (${(error as Error).message.replace(/\.$/, '')}).`);
  }
  return { width: png.width, height: png.height, data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length) };
}

function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

function modelIO(source: string) {
  if (isUrl(source)) {
    try {
      return createFetchIO(source, { cacheName: null });
    } catch {
      throw new UsageError(`--model ${source}: not a valid URL.`);
    }
  }
  const folder = source.endsWith('manifest.json') ? path.dirname(source) : source;
  if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new UsageError(`--model ${source}: no such folder.`);
  if (!existsSync(path.join(folder, 'manifest.json'))) throw new UsageError(`--model ${source}: the folder has no manifest.json.`);
  return createFsIO(folder);
}

/** The longest file name most file systems take, in bytes. */
const NAME_BYTES_LIMIT = 255;

/** The nearest folder that exists on the way to `dir` (which may not exist yet). */
function nearestExisting(dir: string): string {
  let current = path.resolve(dir);
  while (!existsSync(current)) current = path.dirname(current);
  return current;
}

/** Refuses a folder the CLI could not create or write in, in words. */
function checkFolder(flag: string, given: string, dir: string): void {
  const resolved = path.resolve(dir);
  const tooLong = resolved.split(path.sep).find((part) => Buffer.byteLength(part) > NAME_BYTES_LIMIT);
  if (tooLong !== undefined) throw new UsageError(`${flag} ${given}: a name in the path is too long (more than ${NAME_BYTES_LIMIT} bytes).`);
  const existing = nearestExisting(resolved);
  if (!statSync(existing).isDirectory()) throw new UsageError(`${flag} ${given}: ${existing} is a file, not a folder.`);
  // Permissions alone do not tell (root, read-only mounts, /proc): write and remove a probe file.
  const probe = path.join(existing, `.hart-web-write-check-${process.pid}`);
  try {
    closeSync(openSync(probe, 'wx'));
    unlinkSync(probe);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'EROFS' ? 'is on a read-only file system' : code === 'ENOSPC' ? 'is on a full disk' : 'is not writable';
    throw new UsageError(`${flag} ${given}: the folder ${existing} ${why}.`);
  }
}

/** Every output path is checked before the model loads: a bad one costs no work. */
function checkOutputs(options: CliOptions): void {
  if (options.prompts === undefined) {
    const out = path.resolve(options.out);
    if (options.out.endsWith('/') || (existsSync(out) && statSync(out).isDirectory())) {
      throw new UsageError(`--out ${options.out}: is a folder; give a file name such as out.png.`);
    }
    if (Buffer.byteLength(path.basename(out)) > NAME_BYTES_LIMIT) {
      throw new UsageError(`--out ${options.out}: the file name is too long (more than ${NAME_BYTES_LIMIT} bytes).`);
    }
    checkFolder('--out', options.out, path.dirname(out));
  } else {
    checkFolder('--out-dir', options.outDir!, options.outDir!);
  }
  if (options.previews !== undefined) checkFolder('--previews', options.previews, options.previews);
}

function writeFile(file: string, bytes: Uint8Array): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, bytes);
}

const round = (ms: number) => Math.round(ms * 10) / 10;

export async function main(argv: string[]): Promise<number> {
  const options = parseArgs(argv);
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  const prompts = options.prompts !== undefined ? readPrompts(options.prompts) : [withoutControlCharacters(options.prompt!)];
  checkOutputs(options);
  const initImage = options.initImage === undefined ? undefined : readInitImage(options.initImage);
  const io = modelIO(options.model);
  const ort = await importNodeOrt(options.backend);

  const loadStarted = performance.now();
  const loadOptions: LoadOptions = { ort, io, backend: options.backend };
  const engine = await loadEngine(options.model, loadOptions);
  const loadMs = performance.now() - loadStarted;
  // The negative and detail prompts follow the prompt's rules (the engine checks them as it does
  // the prompt; control characters go here, as they do for --prompt).
  const negativePrompt = options.negative === undefined ? undefined : withoutControlCharacters(options.negative);
  const detailPrompt = options.detailPrompt === undefined ? undefined : withoutControlCharacters(options.detailPrompt);
  try {
    const scales = engine.info.scales.length;
    if (options.detailFrom !== undefined && options.detailFrom > scales) {
      throw new UsageError(`--detail-from ${options.detailFrom}: expected ${describeRange(scaleFromRange(scales))}: the model has ${scales} scales.`);
    }
    if (options.fromScale !== undefined) {
      try {
        checkImageFromScale('--from-scale', options.fromScale, scales);
      } catch {
        throw new UsageError(`--from-scale ${options.fromScale}: expected ${describeRange(imageFromScaleRange(scales))}: the model has ${scales} scales (${scales + 1} keeps them all).`);
      }
      if (!engine.info.imageToImage) throw new UsageError(`--init-image: the model ${engine.info.name} has no encoder graph, so it cannot start from an image.`);
    }
    for (const [i, prompt] of prompts.entries()) {
      const out = options.prompts !== undefined ? path.join(options.outDir!, `${String(i).padStart(3, '0')}.png`) : options.out;
      const previews: { index: number; pixels: ImagePixels }[] = [];
      const onEvent = (event: GenerateEvent) => {
        if (event.type === 'scale' && event.preview) previews.push({ index: event.index, pixels: event.preview });
      };
      const result = await engine.generate(
        { prompt, seed: options.seed, settings: options.settings, previews: options.previews !== undefined, negativePrompt, detailPrompt, detailFrom: options.detailFrom, initImage, fromScale: options.fromScale },
        { onEvent },
      );
      writeFile(out, await encodePng(result.image, provenanceText(result, 'HART Web (CLI)')));
      if (options.previews !== undefined) {
        const prefix = options.prompts !== undefined ? `${String(i).padStart(3, '0')}-` : '';
        for (const { index, pixels } of previews) {
          const file = path.join(options.previews, `${prefix}scale-${String(index).padStart(2, '0')}.png`);
          writeFile(file, await encodePng(pixels, { ...provenanceText(result, 'HART Web (CLI)'), scale: String(index) }));
        }
      }
      for (const warning of result.warnings) console.error(withoutControlCharacters(`warning: ${warning}`));
      if (options.json) {
        const timings = Object.fromEntries(Object.entries(result.timings).map(([k, v]) => [k, round(v)]));
        console.log(
          JSON.stringify({
            out,
            prompt,
            ...(result.negativePrompt !== undefined ? { negativePrompt: result.negativePrompt } : {}),
            ...(result.detailPrompt !== undefined ? { detailPrompt: result.detailPrompt, detailFrom: result.detailFrom } : {}),
            ...(result.fromScale !== undefined ? { initImage: options.initImage, fromScale: result.fromScale } : {}),
            seed: result.seed,
            model: result.model,
            backend: result.backend,
            width: result.image.width,
            height: result.image.height,
            loadMs: i === 0 ? round(loadMs) : 0,
            timings,
            settings: result.settings,
          }),
        );
      } else {
        // A long prompt is quoted as the warning quotes it, not repeated in full.
        const quoted = quotePrompt(prompt, engine.analyzePrompt(prompt));
        console.log(`${out}: ${result.image.width}×${result.image.height}, ${(result.timings.total / 1000).toFixed(2)} s on ${result.backend} — ${quoted}`);
      }
    }
  } finally {
    await engine.dispose();
  }
  return 0;
}

/**
 * onnxruntime-node crashes (SIGSEGV in `session.run`) in a process whose command line is long,
 * whatever JavaScript does with `process.argv` afterwards. So a long command line (a long
 * --prompt) never reaches the process that runs the engine: this one starts the CLI again with a
 * short command line and hands it the arguments through a pipe.
 */
const ARGV_BYTES_LIMIT = 8 * 1024;
const ARGV_FD_ENV = 'HART_CLI_ARGV_FD';

function argumentsOfThisRun(): string[] {
  const fd = process.env[ARGV_FD_ENV];
  if (fd === undefined) return process.argv.slice(2);
  delete process.env[ARGV_FD_ENV];
  return JSON.parse(readFileSync(Number(fd), 'utf8')) as string[];
}

function argvBytes(argv: string[]): number {
  return argv.reduce((sum, arg) => sum + Buffer.byteLength(arg) + 1, 0);
}

/** Runs the CLI in a child with the arguments on fd 3; resolves to its exit status. */
function rerunWithShortArgv(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, process.argv[1]], {
      stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
      env: { ...process.env, [ARGV_FD_ENV]: '3' },
    });
    (child.stdio[3] as NodeJS.WritableStream).end(JSON.stringify(args));
    child.on('error', (error) => {
      console.error(`error: could not start the CLI again: ${error.message}`);
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      if (signal) console.error(`error: the engine stopped (${signal}).`);
      resolve(code ?? 1);
    });
  });
}

const invokedDirectly = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly && process.env[ARGV_FD_ENV] === undefined && argvBytes(process.argv) > ARGV_BYTES_LIMIT) {
  rerunWithShortArgv(process.argv.slice(2)).then((status) => process.exit(status));
} else if (invokedDirectly) {
  main(argumentsOfThisRun()).then(
    (status) => process.exit(status),
    (error) => {
      const { status, line } = describeFailure(error);
      console.error(withoutControlCharacters(line));
      process.exit(status);
    },
  );
}
