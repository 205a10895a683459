// Named errors that cross the worker boundary as plain data ({ code, message }).
// The message is meant for people: it names the file, setting or input concerned.
import type { EngineErrorCode } from './types';

export class EngineError extends Error {
  readonly code: EngineErrorCode;

  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EngineError';
    this.code = code;
  }

  toJSON(): { code: EngineErrorCode; message: string } {
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
  constructor(message = 'Generation was cancelled.') {
    super('cancelled', message);
    this.name = 'CancelledError';
  }
}

/** Wraps anything unexpected so that callers always see an EngineError with a code. */
export function toEngineError(error: unknown): EngineError {
  if (error instanceof EngineError) return error;
  if (isAbortError(error)) return new CancelledError();
  const message = error instanceof Error ? error.message : String(error);
  if (/device (was )?lost|GPUDevice.*lost/i.test(message)) {
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
