// What the command-line tools do with a failure: its exit status and one line for stderr.
// The rule (README, "Command line"): 2 when what the user gave is wrong, 1 otherwise; the
// engine's failures follow EXIT_STATUS, defined beside its error codes.
import { EXIT_STATUS, toEngineError } from '../engine/index';

/** A problem with the command line or its input: exit status 2. */
export class UsageError extends Error {}

/** Node's own wording of a system error ("ENOSPC: no space left on device, open '/x'"), put as "/x: no space left on device". */
function systemErrorInWords(error: unknown): string | undefined {
  const { code, path, message } = (error ?? {}) as { code?: unknown; path?: unknown; message?: unknown };
  if (typeof code !== 'string' || typeof message !== 'string') return undefined;
  const words = new RegExp(`^${code}: ([^,]+)`).exec(message)?.[1];
  if (!words) return undefined;
  return typeof path === 'string' ? `${path}: ${words}` : words;
}

/** Maps a failure to its exit status and one line for stderr. */
export function describeFailure(error: unknown): { status: 1 | 2; line: string } {
  if (error instanceof UsageError) return { status: 2, line: `error: ${error.message}` };
  const failure = toEngineError(error);
  const message = (failure.code === 'internal' && systemErrorInWords(error)) || failure.message;
  return { status: EXIT_STATUS[failure.code], line: `error: ${message.split('\n')[0].trim()}` };
}
