// A stand-in for the engine with the real interface: it paints flat colours scale by scale,
// reports the same events as the real pipeline, honours AbortSignal between steps, and records
// how many runs overlapped (the worker must never let two run at once).
import {
  HART_DEFAULTS,
  throwIfCancelled,
  type Engine,
  type GenerateOptions,
  type GenerateRequest,
  type GenerateResult,
  type ImagePixels,
  type ModelInfo,
  type SamplingSettings,
} from '../../src/engine/index';

export const FAKE_DEFAULTS: SamplingSettings = { ...HART_DEFAULTS, cfg: 4 };

export function fakeInfo(overrides: Partial<ModelInfo> = {}): ModelInfo {
  return {
    name: 'fake-shapes',
    description: 'A fake model for tests',
    imageSize: 8,
    scales: [1, 2, 4],
    defaults: FAKE_DEFAULTS,
    examples: ['a red circle', 'a blue square on green'],
    backend: { backend: 'wasm', fp16: false, reason: 'WebGPU is not available in tests.' },
    vocabulary: ['a', 'red', 'blue', 'green', 'circle', 'square', 'on'],
    imageToImage: true,
    ...overrides,
  };
}

export function solid(size: number, value: number): ImagePixels {
  const data = new Uint8ClampedArray(size * size * 4);
  for (let i = 0; i < data.length; i += 4) {
    data[i] = value;
    data[i + 1] = (value * 3) % 256;
    data[i + 2] = 255 - value;
    data[i + 3] = 255;
  }
  return { width: size, height: size, data };
}

export interface FakeEngineControls {
  engine: Engine;
  /** Runs whose generate() has started, in order. */
  requests: GenerateRequest[];
  /** The most runs that were ever in progress at the same time. */
  maxConcurrent: number;
  disposed: boolean;
}

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function createFakeEngine(info: ModelInfo = fakeInfo(), stepMs = 1, diffusionSteps = 3): FakeEngineControls {
  let active = 0;
  const controls: FakeEngineControls = {
    requests: [],
    maxConcurrent: 0,
    disposed: false,
    engine: {
      info,
      analyzePrompt(prompt) {
        const tokens = prompt.toLowerCase().split(/\s+/).filter(Boolean);
        return {
          tokens,
          unknown: tokens.filter((t) => !info.vocabulary?.includes(t)),
          truncated: tokens.length > 24,
        };
      },
      async generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
        const { signal, onEvent } = options;
        if (!request.prompt.trim()) throw Object.assign(new Error('The prompt is empty.'), { code: 'bad-input' });
        controls.requests.push(request);
        active++;
        controls.maxConcurrent = Math.max(controls.maxConcurrent, active);
        const settings = { ...info.defaults, ...request.settings };
        const started = Date.now();
        const step = async () => {
          await tick(stepMs);
          throwIfCancelled(signal);
        };
        try {
          onEvent?.({ type: 'start', scales: info.scales.length, width: info.imageSize, height: info.imageSize, warnings: [] });
          for (let k = 0; k < info.scales.length; k++) {
            await step();
            const preview = solid(info.scales[k], (request.seed + k * 40) % 256);
            onEvent?.({ type: 'scale', index: k, count: info.scales.length, preview, elapsedMs: Date.now() - started });
          }
          if (settings.residual) {
            for (let s = 1; s <= diffusionSteps; s++) {
              await step();
              onEvent?.({ type: 'diffusion', step: s, steps: diffusionSteps, elapsedMs: Date.now() - started });
            }
          }
          await step();
          onEvent?.({ type: 'decode', elapsedMs: Date.now() - started });
          const kept = request.vary ? request.vary.fromScale - 1 : 0;
          const zero = { textEncoder: 0, transformer: 0, head: 0, sampling: 0, scaleUpdate: 0, preview: 0, diffusion: 0, decoder: 0, prefix: 0, reusedScales: 0, encoder: 0 };
          return {
            image: solid(info.imageSize, request.seed % 256),
            prompt: request.prompt,
            seed: request.seed,
            settings,
            model: info.name,
            backend: info.backend.backend,
            timings: { ...zero, total: Date.now() - started },
            warnings: [],
            // Like the engine: a vary keeps the maps and seeds of the scales before its first one.
            tokens: {
              maps: info.scales.map((side, k) => (k < kept ? request.vary!.tokens.maps[k] : new Int32Array(side * side).fill(request.seed % 1000))),
              seeds: info.scales.map((_, k) => (k < kept ? request.vary!.tokens.seeds[k] : request.seed)),
            },
            ...(request.vary ? { variedFrom: request.vary.fromScale } : {}),
            ...(request.negativePrompt ? { negativePrompt: request.negativePrompt } : {}),
            ...(request.detailPrompt ? { detailPrompt: request.detailPrompt, detailFrom: request.detailFrom } : {}),
          };
        } finally {
          active--;
        }
      },
      async dispose() {
        controls.disposed = true;
      },
    },
  };
  return controls;
}
