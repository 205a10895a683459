// Forwarding callbacks (progress, events) from the worker to the page.
import * as Comlink from 'comlink';

/**
 * Callbacks arrive as comlink proxies, each with its own message port, so a call's result could
 * overtake its last events. Every forwarded event is awaited before the result is returned, and
 * the proxy's port is closed once the call is over.
 */
export function relay<T, R>(callback: ((value: T) => void) | undefined, call: (forward?: (value: T) => void) => Promise<R>): Promise<R> {
  if (!callback) return call(undefined);
  const delivered: Promise<unknown>[] = [];
  const forward = (value: T) => {
    delivered.push(Promise.resolve(callback(value)).catch(() => undefined));
  };
  const drain = () => Promise.all(delivered);
  return call(forward)
    .then(
      async (result) => {
        await drain();
        return result;
      },
      async (error: unknown) => {
        await drain();
        throw error;
      },
    )
    .finally(() => (callback as Partial<Comlink.ProxyMethods>)[Comlink.releaseProxy]?.());
}

