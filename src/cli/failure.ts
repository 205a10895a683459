// What the command-line tools do with a failure: its exit status and one line for stderr.
import { EngineError } from '../engine/index';

/** A problem with the command line or its input: exit status 2. */
export class UsageError extends Error {}

/** Maps a failure to its exit status and one line for stderr. */
export function describeFailure(error: unknown): { status: number; line: string } {
  if (error instanceof UsageError) return { status: 2, line: `error: ${error.message}` };
  if (error instanceof EngineError && error.code === 'bad-input') return { status: 2, line: `error: ${error.message}` };
  const message = error instanceof Error ? error.message : String(error);
  return { status: 1, line: `error: ${message.split('\n')[0]}` };
}
