// Runs ONNX graphs with onnxruntime-node on .npy inputs and compares them with expected .npy
// outputs. Python has no onnxruntime here, so the export tests call this script.
//
//   node tools/tests/export/ort_check.mjs spec.json [wasm]
//
// With `wasm` the graphs run in onnxruntime-web's WASM build (its Node entry) instead.
// float16 arrays (.npy '<f2') are fed and compared as float16 tensors.
//
// spec.json: { "cases": [ { "name": "...", "model": "path.onnx",
//                            "inputs":   { "<input name>":  "file.npy", ... },
//                            "expected": { "<output name>": "file.npy", ... },
//                            "save": "dir" (optional: write every output there as <name>.npy) } ] }
// Relative paths are resolved against the spec's folder. Prints one JSON object:
// { "cases": [ { "name", "ok", "error"?, "outputs": { "<name>": { "shape", "maxAbs", "maxRef", "rel" } } } ] }
// where rel = maxAbs / maxRef (error relative to the largest expected magnitude).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
const runtime = process.argv[3] ?? 'node';
if (runtime !== 'node' && runtime !== 'wasm') {
  console.error(`unknown runtime ${runtime} (expected node or wasm)`);
  process.exit(2);
}
const ort = runtime === 'wasm' ? await import('onnxruntime-web') : (await import('onnxruntime-node')).default;
if (runtime === 'wasm') ort.env.wasm.numThreads = 1;

const DTYPES = {
  '<f2': { ort: 'float16', array: Uint16Array },
  '<f4': { ort: 'float32', array: Float32Array },
  '<f8': { ort: 'float64', array: Float64Array },
  '<i4': { ort: 'int32', array: Int32Array },
  '<i8': { ort: 'int64', array: BigInt64Array },
  '|u1': { ort: 'uint8', array: Uint8Array },
};

function readNpy(file) {
  const bytes = readFileSync(file);
  if (bytes.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not a .npy file`);
  const major = bytes[6];
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.toString('latin1', start, start + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${file}: Fortran order is not supported`);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)[1];
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const type = DTYPES[descr];
  if (!type) throw new Error(`${file}: dtype ${descr} is not supported`);
  const offset = start + headerLength;
  const count = shape.reduce((a, b) => a * b, 1);
  // Copy into an aligned buffer: typed arrays need offsets that are multiples of their size.
  const data = new type.array(count);
  new Uint8Array(data.buffer).set(bytes.subarray(offset, offset + count * type.array.BYTES_PER_ELEMENT));
  return new ort.Tensor(type.ort, data, shape);
}

function writeNpy(file, tensor) {
  const descr = Object.entries(DTYPES).find(([, t]) => t.ort === tensor.type)?.[0];
  if (!descr) throw new Error(`cannot save ${tensor.type}`);
  const shape = tensor.dims.length === 1 ? `(${tensor.dims[0]},)` : `(${tensor.dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const data = tensor.data;
  writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

/** IEEE half bits → number. */
function halfToNumber(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function values(tensor) {
  return tensor.type === 'float16' ? Array.from(tensor.data, halfToNumber) : tensor.data;
}

function compare(actual, expected) {
  let maxAbs = 0;
  let maxRef = 0;
  const a = values(actual);
  const e = values(expected);
  if (a.length !== e.length) return { shape: actual.dims, maxAbs: Infinity, maxRef: 0, rel: Infinity };
  for (let i = 0; i < a.length; i++) {
    const x = Number(a[i]);
    const y = Number(e[i]);
    const d = Number.isNaN(x) !== Number.isNaN(y) ? Infinity : Math.abs(x - y) || 0;
    if (d > maxAbs) maxAbs = d;
    if (Math.abs(y) > maxRef) maxRef = Math.abs(y);
  }
  return { shape: actual.dims, maxAbs, maxRef, rel: maxRef > 0 ? maxAbs / maxRef : maxAbs };
}

/**
 * onnxruntime-node reads a model's external data from its folder itself; onnxruntime-web is
 * given the bytes: the exporter's shards `<model>.data`, `<model>.data1`, … next to the model.
 */
async function createSession(model) {
  if (runtime === 'node') return ort.InferenceSession.create(model);
  const name = path.basename(model);
  const externalData = readdirSync(path.dirname(model))
    .filter((f) => f === `${name}.data` || new RegExp(`^${name.replace(/[.]/g, '\\.')}\\.data\\d+$`).test(f))
    .map((f) => ({ path: f, data: new Uint8Array(readFileSync(path.join(path.dirname(model), f))) }));
  return ort.InferenceSession.create(new Uint8Array(readFileSync(model)), { executionProviders: ['wasm'], externalData });
}

async function runCase(spec, base) {
  const resolve = (p) => path.resolve(base, p);
  const result = { name: spec.name ?? spec.model, ok: true, outputs: {} };
  try {
    const session = await createSession(resolve(spec.model));
    const feeds = {};
    for (const [name, file] of Object.entries(spec.inputs)) feeds[name] = readNpy(resolve(file));
    const outputs = await session.run(feeds);
    if (spec.save) mkdirSync(resolve(spec.save), { recursive: true });
    for (const [name, tensor] of Object.entries(outputs)) {
      if (spec.save) writeNpy(path.join(resolve(spec.save), `${name}.npy`), tensor);
      const file = spec.expected?.[name];
      const stats = file ? compare(tensor, readNpy(resolve(file))) : { shape: tensor.dims };
      result.outputs[name] = { ...stats, dtype: tensor.type };
    }
    for (const name of Object.keys(spec.expected ?? {})) {
      if (!(name in outputs)) throw new Error(`missing output ${name}`);
    }
    await session.release();
  } catch (error) {
    result.ok = false;
    result.error = String(error?.message ?? error);
  }
  return result;
}

const specFile = process.argv[2];
if (!specFile) {
  console.error('usage: node tools/tests/export/ort_check.mjs spec.json [node|wasm]');
  process.exit(2);
}
const spec = JSON.parse(readFileSync(specFile, 'utf8'));
const base = path.dirname(path.resolve(specFile));
const cases = [];
for (const c of spec.cases) cases.push(await runCase(c, base));
console.log(JSON.stringify({ cases }, (k, v) => (v === Infinity ? 'Infinity' : v)));
