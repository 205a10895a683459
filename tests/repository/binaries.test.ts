import { describe, expect, it } from 'vitest';
import { isBinary, largeBinaries, manifestProblems, readManifest, type BinaryManifest } from './binaryManifest';

describe('binaries.json', () => {
  it('lists every tracked binary over the limit with its current size and hash', () => {
    const manifest = readManifest();
    expect(manifest.limitBytes).toBe(1024 * 1024);
    expect(manifestProblems(manifest, largeBinaries(manifest.limitBytes))).toEqual([]);
  });

  it('reports an unlisted binary, a changed one, a stale entry and a missing reason', () => {
    const manifest: BinaryManifest = {
      limitBytes: 10,
      files: {
        'model.onnx': { bytes: 20, sha256: 'aa', why: 'the default model' },
        'gone.bin': { bytes: 30, sha256: 'bb', why: 'was needed once' },
        'plain.bin': { bytes: 40, sha256: 'cc', why: ' ' },
      },
    };
    const actual = new Map([
      ['model.onnx', { bytes: 21, sha256: 'ab' }],
      ['new.pt', { bytes: 50, sha256: 'dd' }],
      ['plain.bin', { bytes: 40, sha256: 'cc' }],
    ]);
    const problems = manifestProblems(manifest, actual);
    expect(problems).toHaveLength(4);
    expect(problems.join('\n')).toMatch(/model\.onnx changed \(20 → 21 bytes\)/);
    expect(problems.join('\n')).toMatch(/new\.pt \(50 bytes\) is a binary over 10 bytes/);
    expect(problems.join('\n')).toMatch(/gone\.bin is listed/);
    expect(problems.join('\n')).toMatch(/plain\.bin: binaries\.json does not say why/);
  });

  it('tells binary from text as git does', () => {
    expect(isBinary(new TextEncoder().encode('{"a": 1}\n'))).toBe(false);
    expect(isBinary(new Uint8Array([0x08, 0x01, 0x00, 0x12]))).toBe(true);
  });
});
