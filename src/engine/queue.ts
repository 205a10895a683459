// One queue for every session create and run. Overlapping runs crash or hang onnxruntime-web's
// WebGPU provider, even on different sessions (docs/onnxruntime-web.md §3), so all of them wait
// their turn here.

export class RunQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  /** Runs `task` after every task enqueued before it has settled. */
  enqueue<T>(task: () => Promise<T>): Promise<T> {
    this.pending++;
    const result = this.tail.then(task);
    // The chain continues whether the task fails or not; failures reach only their caller.
    this.tail = result.then(
      () => this.pending--,
      () => this.pending--,
    );
    return result;
  }

  /** Tasks enqueued and not yet settled. */
  get size(): number {
    return this.pending;
  }
}

/** The queue shared by every engine in this JS realm (one worker, or one Node process). */
export const sharedQueue = new RunQueue();

/**
 * Lets the realm handle the messages waiting for it (a worker's Cancel) before the next run.
 * WASM runs are synchronous inside their promise, so without a macrotask between them a
 * worker would only see Cancel after the whole generation. A MessageChannel round trip costs
 * far less than setTimeout's clamped delay.
 */
export function yieldToEventLoop(): Promise<void> {
  if (typeof MessageChannel === 'undefined') return new Promise((resolve) => setTimeout(resolve, 0));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}
