// One ONNX graph ready to run: its ORT session, created and run only through the shared queue.
// Also the few tensor helpers every stage needs.
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { BadPackageError, throwIfCancelled, toEngineError } from './errors';
import { yieldToEventLoop, type RunQueue } from './queue';
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

/** Reads a graph's bytes again, for a session that was suspended to free its memory. */
export type GraphLoader = () => Promise<GraphSource>;

export class GraphSession {
  private released = false;
  private session: InferenceSession | null;
  private reloading: Promise<InferenceSession> | null = null;
  private readonly names: { inputs: readonly string[]; outputs: readonly string[] };
  private readonly inputTypes: ReadonlyMap<string, string>;
  /** How many times the session was created again after a suspend (for tests and logs). */
  reloads = 0;

  constructor(
    readonly name: string,
    session: InferenceSession,
    private readonly context: SessionContext,
    private readonly reload?: { load: GraphLoader; gpuOutputs: readonly string[] },
  ) {
    this.session = session;
    this.names = { inputs: [...session.inputNames], outputs: [...session.outputNames] };
    // Older runtimes (and test doubles) have no metadata: then every type is unknown.
    const metadata = (session as { inputMetadata?: readonly InferenceSession.ValueMetadata[] }).inputMetadata ?? [];
    this.inputTypes = new Map(metadata.flatMap((m) => (m.isTensor ? [[m.name, m.type] as const] : [])));
  }

  /** The element type the graph declares for a tensor input ('float32', 'float16', …), if known. */
  inputType(name: string): string | undefined {
    return this.inputTypes.get(name);
  }

  get inputNames(): readonly string[] {
    return this.names.inputs;
  }

  get outputNames(): readonly string[] {
    return this.names.outputs;
  }

  /** False while suspended: the next run creates the session again. */
  get loaded(): boolean {
    return this.session !== null;
  }

  /**
   * Runs the graph through the queue. `outputs` limits what is fetched (others are computed but
   * not returned). The signal is checked when the run's turn comes, so a cancelled request never
   * starts another run.
   */
  async run(feeds: Feeds, outputs?: string[], signal?: AbortSignal): Promise<Record<string, Tensor>> {
    throwIfCancelled(signal);
    const session = this.session ?? (await this.recreate());
    return this.context.queue.enqueue(async () => {
      if (signal) await yieldToEventLoop();
      throwIfCancelled(signal);
      if (this.released) throw new Error(`The ${this.name} graph was released.`);
      try {
        return (await (outputs ? session.run(feeds, outputs) : session.run(feeds))) as Record<string, Tensor>;
      } catch (error) {
        const wrapped = toEngineError(error);
        wrapped.message = `${this.name}: ${wrapped.message}`;
        throw wrapped;
      }
    });
  }

  /**
   * Releases the ORT session (its GPU buffers) but keeps this object usable: the next run reads
   * the graph again and recreates it. Only for sessions created with a loader.
   */
  async suspend(): Promise<void> {
    if (!this.reload) throw new Error(`The ${this.name} graph cannot be suspended (it has no loader).`);
    const session = this.session;
    if (this.released || !session) return;
    this.session = null;
    await this.context.queue.enqueue(() => session.release());
  }

  private recreate(): Promise<InferenceSession> {
    if (this.released) return Promise.reject(new Error(`The ${this.name} graph was released.`));
    this.reloading ??= (async () => {
      try {
        const source = await this.reload!.load();
        const session = await createOrtSession(this.context, source, this.reload!.gpuOutputs);
        if (this.released) {
          await this.context.queue.enqueue(() => session.release());
          throw new Error(`The ${this.name} graph was released.`);
        }
        this.session = session;
        this.reloads++;
        return session;
      } finally {
        this.reloading = null;
      }
    })();
    return this.reloading;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const session = this.session;
    this.session = null;
    if (session) await this.context.queue.enqueue(() => session.release());
  }
}

/** The part of `navigator.gpu` that the WebGPU provider choice reads (injectable for tests). */
export interface SubgroupGpu {
  requestAdapter(options?: GPURequestAdapterOptions): Promise<{
    features: ReadonlySet<string>;
    limits: object;
    info?: { subgroupMinSize?: number };
    requestDevice(descriptor?: GPUDeviceDescriptor): Promise<GPUDevice>;
  } | null>;
}

export type WebGpuProvider = 'webgpu' | { name: 'webgpu'; device: GPUDevice };

/** Narrower subgroups than this break onnxruntime-web 1.30's flash-attention prefill shader. */
export const MIN_FLASH_ATTENTION_SUBGROUP = 8;

/**
 * The WebGPU provider entry for sessions. onnxruntime-web 1.30's prefill flash-attention shader
 * (fused attention: docs/full-model.md §4) shuffles 8 or 16 keys across a subgroup and gives
 * wrong results when subgroups have fewer lanes (SwiftShader has 4). On such an adapter the
 * sessions get a device created without the `subgroups` feature, where ORT's shaders take their
 * shared-memory paths; everywhere else ORT creates its own device ('webgpu').
 */
export async function chooseWebGpuProvider(gpu: SubgroupGpu | undefined): Promise<WebGpuProvider> {
  const adapter = await gpu?.requestAdapter({ powerPreference: 'high-performance' });
  const lanes = adapter?.info?.subgroupMinSize;
  if (!adapter || !adapter.features.has('subgroups') || lanes === undefined || lanes >= MIN_FLASH_ATTENTION_SUBGROUP) return 'webgpu';
  // Every limit at the adapter's maximum, as ORT asks for its own device.
  const requiredLimits: Record<string, number> = {};
  for (const key in adapter.limits) {
    const value = (adapter.limits as Record<string, unknown>)[key];
    if (typeof value === 'number') requiredLimits[key] = value;
  }
  const requiredFeatures = [...adapter.features].filter((f) => !f.startsWith('subgroup') && !f.startsWith('chromium-')) as GPUFeatureName[];
  return { name: 'webgpu', device: await adapter.requestDevice({ requiredLimits, requiredFeatures }) };
}

let webGpuProvider: Promise<WebGpuProvider> | undefined;

/** chooseWebGpuProvider for this page's `navigator.gpu`, decided once: all sessions share the device. */
function pageWebGpuProvider(): Promise<WebGpuProvider> {
  webGpuProvider ??= chooseWebGpuProvider((globalThis as { navigator?: { gpu?: SubgroupGpu } }).navigator?.gpu).catch(() => 'webgpu' as const);
  return webGpuProvider;
}

/** Creates the ORT session of a graph through the queue; see createGraphSession. */
async function createOrtSession(context: SessionContext, source: GraphSource, gpuOutputs: readonly string[]): Promise<InferenceSession> {
  const { ort, backend } = context;
  const provider = backend === 'webgpu' ? await pageWebGpuProvider() : backend;
  if (typeof provider === 'object') {
    // ORT publishes only the devices it creates as env.webgpu.device; the engine's device-loss
    // watch (backend.ts watchDeviceLoss) reads it there.
    const env = ort.env.webgpu as { device?: unknown };
    env.device ??= provider.device;
  }
  const options: InferenceSession.SessionOptions = {
    executionProviders: [provider],
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
  return context.queue.enqueue(async () => {
    try {
      return await ort.InferenceSession.create(source.bytes, options);
    } catch (error) {
      throw new BadPackageError(`could not be loaded as an ONNX graph on ${backend} (${(error as Error).message})`, source.path, { cause: error });
    }
  });
}

/**
 * Creates a session. On WebGPU, `gpuOutputs` (the KV cache, and outputs that only other graphs
 * read) stay on the GPU as 'gpu-buffer' tensors; names the graph lacks are ignored by ORT.
 * With `load`, the session can be suspended to free its memory and is recreated from what
 * `load` returns when it runs next.
 */
export async function createGraphSession(
  context: SessionContext,
  name: string,
  source: GraphSource,
  gpuOutputs: readonly string[] = [],
  load?: GraphLoader,
): Promise<GraphSession> {
  const session = await createOrtSession(context, source, gpuOutputs);
  return new GraphSession(name, session, context, load ? { load, gpuOutputs } : undefined);
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

/**
 * The first `rows` rows of a tensor (along its first dimension) as a tensor that shares its
 * storage: a typed-array view on the CPU, the same buffer on WebGPU (leading rows are a prefix of
 * a row-major buffer). Valid only while `tensor` lives; disposing the view frees nothing.
 */
export function leadingRows(ort: Ort, tensor: Tensor, rows: number): Tensor {
  const dims = [rows, ...tensor.dims.slice(1)];
  if (tensor.location === 'gpu-buffer') {
    return ort.Tensor.fromGpuBuffer(tensor.gpuBuffer, { dataType: tensor.type as 'float32' | 'float16', dims });
  }
  const size = dims.reduce((a, b) => a * b, 1);
  const data = tensor.data as Float32Array | Uint16Array;
  return new ort.Tensor(tensor.type as 'float32' | 'float16', data.subarray(0, size), dims);
}

/**
 * A float32 CPU tensor holding the first `rows` rows of `tensor` `times` times over
 * (downloading GPU tensors).
 */
export async function repeatRows(ort: Ort, tensor: Tensor, rows: number, times: number): Promise<Tensor> {
  const rowSize = tensor.dims.slice(1).reduce((a, b) => a * b, 1);
  const block = (await readFloats(tensor)).subarray(0, rows * rowSize);
  const out = new Float32Array(times * block.length);
  for (let i = 0; i < times; i++) out.set(block, i * block.length);
  return floatTensor(ort, out, [times * rows, ...tensor.dims.slice(1)]);
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
