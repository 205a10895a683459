// Two tabs that load the same package at once share one download: the Web Locks API
// (`navigator.locks`) lets one tab download and cache the files while the other waits, then
// reads them from the cache. Where there is no Web Locks API (Node), loads just run.
import { CancelledError, isAbortError, LOADING_CANCELLED } from './errors';

/** The part of `navigator.locks` a load uses (tests inject a fake). */
export interface LockManagerLike {
  request<T>(name: string, options: { signal?: AbortSignal }, callback: () => Promise<T>): Promise<T>;
}

/** `navigator.locks`, where the platform has it. */
export function platformLocks(): LockManagerLike | undefined {
  return (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
}

/** The lock a download of the package at `location` holds: one name per package URL. */
export function packageLockName(location: string): string {
  return `hart-web-download ${location}`;
}

/**
 * Runs `work` holding the package's lock (exclusive), so only one tab downloads the package at a
 * time. A wait for the lock stops at once when `signal` aborts. Without `locks`, runs `work` as is.
 */
export async function withPackageLock<T>(locks: LockManagerLike | undefined, location: string, signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
  if (!locks) return work();
  try {
    return await locks.request(packageLockName(location), signal ? { signal } : {}, work);
  } catch (error) {
    // The lock request itself rejects with an AbortError when the wait is cancelled.
    if (isAbortError(error) || signal?.aborted) throw error instanceof CancelledError ? error : new CancelledError(LOADING_CANCELLED);
    throw error;
  }
}
