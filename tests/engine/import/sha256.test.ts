// The importer's own SHA-256 (for browsers, where WebCrypto cannot hash a file chunk by chunk)
// against Node's, over lengths around the 64-byte block and its padding, fed in uneven chunks.
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Sha256 } from '../../../src/engine/import/sha256';
import { createMemorySink, sha256Hasher } from '../../../src/engine/import/sink';

describe('incremental sha256', () => {
  it.each([0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, 65_537])('hashes %i bytes as Node does', (length) => {
    const data = randomBytes(length);
    const hash = new Sha256();
    for (let at = 0; at < length; at += 37) hash.update(data.subarray(at, at + 37));
    expect(hash.hex()).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('is the default hasher, and the memory sink keeps whole files only', async () => {
    expect(sha256Hasher().hex()).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    const sink = createMemorySink();
    const kept = await sink.create('a.bin');
    await kept.write(Uint8Array.of(1, 2));
    await kept.write(Uint8Array.of(3));
    await kept.close();
    const dropped = await sink.create('b.bin');
    await dropped.write(Uint8Array.of(9));
    await dropped.abort();
    expect([...sink.files.keys()]).toEqual(['a.bin']);
    expect(Array.from(await sink.read('a.bin'))).toEqual([1, 2, 3]);
    await expect(sink.read('b.bin')).rejects.toThrow('b.bin has not been written');
  });
});
