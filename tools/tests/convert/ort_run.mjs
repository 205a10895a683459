// Run ONNX graphs with onnxruntime-node for the Python converter tests.
// Usage: node tools/tests/convert/ort_run.mjs RUNS.json
// RUNS.json: [{ "model": path, "inputs": { name: { "file", "dtype", "shape" } }, "out": dir,
//               "optimization"?: "disabled" | "basic" | "extended" | "all" (default "all") }, ...]
// Each input file holds raw little-endian values (float16 as its 16-bit patterns). For every run, each output is written to
// `<out>/<name>.bin` (raw) and `<out>/outputs.json` lists {name: {dtype, shape}}.
// External-data files are found next to the model, as onnxruntime does from a path.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import ort from 'onnxruntime-node';

const ARRAYS = { float16: Uint16Array, float32: Float32Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, int8: Int8Array };

function load(input) {
  const Ctor = ARRAYS[input.dtype];
  if (!Ctor) throw new Error(`unsupported dtype ${input.dtype}`);
  const bytes = new Uint8Array(readFileSync(input.file)); // a private copy: Buffers share a pool
  return new ort.Tensor(input.dtype, new Ctor(bytes.buffer, 0, bytes.byteLength / Ctor.BYTES_PER_ELEMENT), input.shape);
}

const runs = JSON.parse(readFileSync(process.argv[2], 'utf8'));
for (const run of runs) {
  const session = await ort.InferenceSession.create(run.model, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: run.optimization ?? 'all',
  });
  const feeds = {};
  for (const [name, input] of Object.entries(run.inputs)) feeds[name] = load(input);
  const results = await session.run(feeds);
  mkdirSync(run.out, { recursive: true });
  const listing = {};
  for (const [name, tensor] of Object.entries(results)) {
    const data = tensor.data;
    writeFileSync(`${run.out}/${name}.bin`, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    listing[name] = { dtype: tensor.type, shape: tensor.dims };
  }
  writeFileSync(`${run.out}/outputs.json`, JSON.stringify(listing));
  await session.release();
}
