// A small, valid manifest and its files, built in memory for validation tests.
import { createHash } from 'node:crypto';

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

export function syntheticPackage(): { manifest: Record<string, any>; files: Map<string, Uint8Array> } {
  const patchNums = [1, 2];
  const cv = 2;
  const vocab = 3;
  const width = 8;
  const shapes: Record<string, number[]> = {
    codebook: [vocab, cv],
    phiWeight: [1, cv, cv, 3, 3],
    phiBias: [1, cv],
    levels: [2, width],
    'upsample.0': [2, 1],
    'upsample.1': [2, 2],
    'downsample.0': [1, 2],
    'downsample.1': [2, 2],
  };
  const tables: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    tables[name] = { path: 'tables.bin', offset, shape, dtype: 'float32' };
    offset += shape.reduce((a, b) => a * b, 1) * 4;
  }
  const files = new Map<string, Uint8Array>();
  files.set('tables.bin', Uint8Array.from({ length: offset }, (_, i) => i % 251));
  files.set('tokenizer.json', new TextEncoder().encode('{"model":{"type":"WordLevel"}}'));
  const graphs: Record<string, unknown> = {};
  for (const name of ['textEncoder', 'condition', 'transformer', 'head', 'scaleUpdate', 'diffusionHead', 'decoder', 'preview']) {
    const path = `${name}.onnx`;
    files.set(path, new TextEncoder().encode(`not really ${name}`));
    graphs[name] = { fp32: { path } };
  }
  const manifest = {
    format: 'hart-web-package',
    formatVersion: 1,
    name: 'synthetic',
    description: 'for tests',
    model: {
      imageSize: 16,
      patchNums,
      latentChannels: cv,
      vocabSize: vocab,
      width,
      depth: 1,
      heads: 2,
      ropeTheta: 10000,
      phiIndex: [0],
      diffusion: { steps: 8, trainSteps: 1000, schedule: 'cosine', scale: 0.6 },
    },
    textEncoder: { contextTokens: 4, contextDim: 4, prefixIds: [], padId: 0, unkId: 1, lowercase: true },
    sampling: { cfg: 4, topK: 0, topP: 0, temperature: 1, smooth: false, residual: true },
    examples: ['a red circle'],
    graphs,
    tokenizer: 'tokenizer.json',
    tables,
    files: [...files].map(([path, bytes]) => ({
      path,
      bytes: bytes.length,
      sha256: sha(bytes),
      dtype: path.endsWith('.json') ? 'json' : path.endsWith('.bin') ? 'binary' : 'float32',
    })),
  };
  return { manifest, files };
}
