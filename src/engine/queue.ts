// One queue for every session create and run. Overlapping runs crash or hang onnxruntime-web's
// WebGPU provider, even on different sessions (onnxruntime-web.md §2.7), so all of them wait
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
