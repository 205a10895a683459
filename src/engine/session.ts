// One ONNX graph ready to run: its ORT session, created and run only through the shared queue.
// Also the few tensor helpers every stage needs.
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { BadPackageError, CancelledError, toEngineError } from './errors';
import type { RunQueue } from './queue';
import type { BackendName } from './types';

export type Feeds = Record<string, Tensor>;

export interface GraphSource {
  /** Manifest path of the .onnx file. */
  path: string;
  bytes: Uint8Array;
  /** External data: `path` equals the location written in the graph. */
  externalData: { path: string; data: Uint8Array }[];
}

export interface SessionContext {
  ort: Ort;
  backend: BackendName;
  queue: RunQueue;
}

export class GraphSession {
  private released = false;

  constructor(
    readonly name: string,
    private readonly session: InferenceSession,
    private readonly context: SessionContext,
  ) {}

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /**
   * Runs the graph through the queue. `outputs` limits what is fetched (others are computed but
   * not returned). The signal is checked when the run's turn comes, so a cancelled request never
   * starts another run.
   */
  async run(feeds: Feeds, outputs?: string[], signal?: AbortSignal): Promise<Record<string, Tensor>> {
    return this.context.queue.enqueue(async () => {
      if (signal?.aborted) throw new CancelledError();
      if (this.released) throw new Error(`The ${this.name} graph was released.`);
      try {
        return (await (outputs ? this.session.run(feeds, outputs) : this.session.run(feeds))) as Record<string, Tensor>;
      } catch (error) {
        const wrapped = toEngineError(error);
        wrapped.message = `${this.name}: ${wrapped.message}`;
        throw wrapped;
      }
    });
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.context.queue.enqueue(() => this.session.release());
  }
}

/**
 * Creates a session. On WebGPU, `gpuOutputs` (the KV cache, and outputs that only other graphs
 * read) stay on the GPU as 'gpu-buffer' tensors; names the graph lacks are ignored by ORT.
 */
export async function createGraphSession(
  context: SessionContext,
  name: string,
  source: GraphSource,
  gpuOutputs: readonly string[] = [],
): Promise<GraphSession> {
  const { ort, backend } = context;
  const options: InferenceSession.SessionOptions = {
    executionProviders: [backend],
    graphOptimizationLevel: 'all',
  };
  if (backend === 'cpu') {
    // Spinning worker threads steal the CPU from each other on busy or small machines; without
    // spinning a transformer step took half the time on a loaded 2-core box (measured).
    options.extra = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } };
  }
  if (source.externalData.length) {
    options.externalData = source.externalData.map(({ path, data }) => ({ path, data }));
  }
  if (backend === 'webgpu' && gpuOutputs.length) {
    options.preferredOutputLocation = Object.fromEntries(gpuOutputs.map((output) => [output, 'gpu-buffer' as const]));
  }
  const session = await context.queue.enqueue(async () => {
    try {
      return await ort.InferenceSession.create(source.bytes, options);
    } catch (error) {
      throw new BadPackageError(`could not be loaded as an ONNX graph on ${backend} (${(error as Error).message})`, source.path, { cause: error });
    }
  });
  return new GraphSession(name, session, context);
}

/** A float32 CPU tensor. */
export function floatTensor(ort: Ort, data: Float32Array, dims: readonly number[]): Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function int32Tensor(ort: Ort, data: Int32Array, dims: readonly number[]): Tensor {
  return new ort.Tensor('int32', data, dims);
}

/** The float32 contents of a tensor, downloading GPU tensors. */
export async function readFloats(tensor: Tensor): Promise<Float32Array> {
  const data = tensor.location === 'cpu' ? tensor.data : await tensor.getData();
  if (!(data instanceof Float32Array)) throw new Error(`Expected a float32 tensor, got ${tensor.type}.`);
  return data;
}

/** Frees tensors (GPU buffers on WebGPU; harmless for CPU tensors). */
export function disposeAll(tensors: Iterable<Tensor | undefined>): void {
  for (const tensor of tensors) {
    if (!tensor) continue;
    try {
      tensor.dispose();
    } catch {
      // Already disposed: nothing left to free.
    }
  }
}
