// Named errors that cross the worker boundary as plain data ({ code, message }).
// The message is meant for people: it names the file, setting or input concerned.

/** Every code an engine failure carries; the worker adds only its own 'worker-crashed'. */
export const ENGINE_ERROR_CODES = ['bad-input', 'bad-package', 'fetch-failed', 'no-backend', 'cancelled', 'device-lost', 'internal'] as const;

/** Errors that cross the worker boundary carry a code and a message meant for people. */
export type EngineErrorCode = (typeof ENGINE_ERROR_CODES)[number];

/**
 * The exit status a command-line tool gives for each failure: 2 when what the user gave is
 * wrong (arguments, prompt, settings, a model folder or URL that holds no valid package), 1 when
 * the cause lies outside it (the network, the machine, a fault while running).
 */
export const EXIT_STATUS: Readonly<Record<EngineErrorCode, 1 | 2>> = {
  'bad-input': 2,
  'bad-package': 2,
  'fetch-failed': 1,
  'no-backend': 1,
  cancelled: 1,
  'device-lost': 1,
  internal: 1,
};

/** An engine failure as plain data: what crosses the worker boundary. */
export interface EngineFailure {
  code: EngineErrorCode;
  message: string;
}

export const GENERATION_CANCELLED = 'Generation was cancelled.';
export const LOADING_CANCELLED = 'Loading was cancelled.';

const DEVICE_LOST = /device (was )?lost|GPUDevice.*lost/i;

export function isEngineErrorCode(code: unknown): code is EngineErrorCode {
  return (ENGINE_ERROR_CODES as readonly unknown[]).includes(code);
}

export class EngineError extends Error {
  readonly code: EngineErrorCode;

  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EngineError';
    this.code = code;
  }

  toJSON(): EngineFailure {
    return { code: this.code, message: this.message };
  }
}

/** The input (prompt, settings, arguments) cannot be used as given. */
export class BadInputError extends EngineError {
  constructor(message: string) {
    super('bad-input', message);
    this.name = 'BadInputError';
  }
}

/** The model package is malformed: `file` names the culprit. */
export class BadPackageError extends EngineError {
  readonly file: string | undefined;

  constructor(message: string, file?: string, options?: { cause?: unknown }) {
    super('bad-package', file ? `${file}: ${message}` : message, options);
    this.name = 'BadPackageError';
    this.file = file;
  }
}

/**
 * A published checkpoint (or an import skeleton) that does not fit what the importer expects:
 * a missing file or key, an unexpected key, a shape or config value it does not implement.
 * The message names the file and the field.
 */
export class CheckpointError extends EngineError {
  readonly file: string | undefined;

  constructor(message: string, file?: string) {
    super('bad-input', file ? `${file}: ${message}` : message);
    this.name = 'CheckpointError';
    this.file = file;
  }
}

export class FetchFailedError extends EngineError {
  readonly file: string;

  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super('fetch-failed', `${file}: ${message}`, options);
    this.name = 'FetchFailedError';
    this.file = file;
  }
}

export class NoBackendError extends EngineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('no-backend', message, options);
    this.name = 'NoBackendError';
  }
}

export class CancelledError extends EngineError {
  constructor(message = GENERATION_CANCELLED) {
    super('cancelled', message);
    this.name = 'CancelledError';
  }
}

/** Throws a CancelledError (with `message`) once `signal` is aborted. */
export function throwIfCancelled(signal: AbortSignal | undefined, message = GENERATION_CANCELLED): void {
  if (signal?.aborted) throw new CancelledError(message);
}

/**
 * Wraps anything thrown so that callers always see an EngineError with a code: the one place
 * failures are normalised, in the engine and on each side of the worker boundary. A failure that
 * already crossed it as plain data (`{ code, message }`) keeps its code and message.
 */
export function toEngineError(error: unknown): EngineError {
  if (error instanceof EngineError) return error;
  if (isAbortError(error)) return new CancelledError();
  const plain = error as Partial<EngineFailure> | null;
  if (typeof plain === 'object' && plain !== null && isEngineErrorCode(plain.code) && typeof plain.message === 'string') {
    return new EngineError(plain.code, plain.message, { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  if (DEVICE_LOST.test(message)) {
    return new EngineError('device-lost', `The GPU device was lost: ${message}`, { cause: error });
  }
  return new EngineError('internal', message, { cause: error });
}

export function isAbortError(error: unknown): boolean {
  return (
    typeof error === 'object' &&
    error !== null &&
    'name' in error &&
    (error as { name: unknown }).name === 'AbortError'
  );
}
