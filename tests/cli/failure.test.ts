// The command-line tools' one rule for exit statuses: 2 for what the user gave, 1 for the rest.
import { describe, expect, it } from 'vitest';
import { describeFailure, UsageError } from '../../src/cli/failure';
import { BadInputError, EngineError, ENGINE_ERROR_CODES, EXIT_STATUS } from '../../src/engine/index';
import { BadPackageError, FetchFailedError } from '../../src/engine/errors';

describe('exit statuses', () => {
  it('every engine error code has one, and what the user gave is 2, the rest 1', () => {
    expect(Object.keys(EXIT_STATUS).sort()).toEqual([...ENGINE_ERROR_CODES].sort());
    const twos = ENGINE_ERROR_CODES.filter((code) => EXIT_STATUS[code] === 2);
    expect(twos).toEqual(['bad-input', 'bad-package']);
  });

  it('maps each failure to its status and one line naming the cause', () => {
    const cases: [unknown, number, string][] = [
      [new UsageError('--seed needs a value.'), 2, 'error: --seed needs a value.'],
      [new BadInputError('The prompt is empty.'), 2, 'error: The prompt is empty.'],
      [new BadPackageError('is 100 bytes but the manifest says 200 (the file is truncated)', 'tables.bin'), 2, 'error: tables.bin: is 100 bytes but the manifest says 200 (the file is truncated)'],
      [new FetchFailedError('decoder.onnx', 'no answer from http://host/decoder.onnx for 30 s; gave up after 3 tries'), 1, 'error: decoder.onnx: no answer from http://host/decoder.onnx for 30 s; gave up after 3 tries'],
      [new EngineError('no-backend', 'WebGPU has no adapter on this machine.'), 1, 'error: WebGPU has no adapter on this machine.'],
      // Out of memory and faults at run time are not the user's input.
      [new RangeError('Array buffer allocation failed'), 1, 'error: Array buffer allocation failed'],
      [new Error('[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code\n    at run (session.js:1)'), 1, 'error: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code'],
      [Object.assign(new Error("ENOSPC: no space left on device, write '/tmp/out.png'"), { code: 'ENOSPC', syscall: 'write', path: '/tmp/out.png' }), 1, 'error: /tmp/out.png: no space left on device'],
      [{ code: 'bad-package', message: 'manifest.json: is not JSON' }, 2, 'error: manifest.json: is not JSON'],
    ];
    for (const [error, status, line] of cases) expect(describeFailure(error), line).toEqual({ status, line });
  });
});
