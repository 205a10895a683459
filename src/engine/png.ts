// PNG files with text metadata (prompt, seed, settings, model), written and read the same way in
// browsers and in Node: deflate comes from CompressionStream, which both provide.
import type { GenerateResult, ImagePixels } from './types';
import { BadInputError } from './errors';

const SIGNATURE = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(parts: Uint8Array[]): number {
  let crc = 0xffffffff;
  for (const bytes of parts) {
    for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function ascii(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const typeBytes = ascii(type);
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(typeBytes, 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32([typeBytes, data]));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

async function zlibDeflate(data: Uint8Array): Promise<Uint8Array> {
  // 'deflate' is the zlib format (RFC 1950), which is what IDAT holds.
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function isLatin1(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 255) return false;
  return true;
}

function checkKeyword(key: string): void {
  // PNG keywords: 1-79 printable Latin-1 characters, no leading/trailing/double spaces.
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(key) || /^ | $| {2}/.test(key)) {
    throw new BadInputError(`PNG text key "${key}" is not a valid PNG keyword (1-79 printable Latin-1 characters).`);
  }
}

/**
 * A text chunk: tEXt when the value is Latin-1, else iTXt (UTF-8), so prompts in any script
 * survive the round trip.
 */
function textChunk(key: string, value: string): Uint8Array {
  checkKeyword(key);
  if (isLatin1(value)) return chunk('tEXt', concat([ascii(key), new Uint8Array([0]), ascii(value)]));
  // iTXt: keyword, 0, compression flag 0, method 0, empty language tag, 0, empty translated keyword, 0, text.
  const header = concat([ascii(key), new Uint8Array([0, 0, 0, 0, 0])]);
  return chunk('iTXt', concat([header, new TextEncoder().encode(value)]));
}

/** Encodes RGBA pixels as an 8-bit RGBA PNG carrying `text` as text chunks. */
export async function encodePng(pixels: ImagePixels, text: Record<string, string> = {}): Promise<Uint8Array> {
  const { width, height, data } = pixels;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new BadInputError(`PNG size ${width}×${height} is not a positive integer size.`);
  }
  if (data.length !== width * height * 4) {
    throw new BadInputError(`PNG pixels hold ${data.length} bytes, expected ${width * height * 4} for ${width}×${height} RGBA.`);
  }

  const ihdr = new Uint8Array(13);
  const ihdrView = new DataView(ihdr.buffer);
  ihdrView.setUint32(0, width);
  ihdrView.setUint32(4, height);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8 bits, colour type RGBA, deflate, adaptive filtering, no interlace

  // Each scanline starts with its filter type; 'None' keeps the writer simple and exact.
  const stride = width * 4;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0;
    raw.set(data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }

  const parts = [SIGNATURE, chunk('IHDR', ihdr)];
  for (const [key, value] of Object.entries(text)) parts.push(textChunk(key, value));
  parts.push(chunk('IDAT', await zlibDeflate(raw)), chunk('IEND', new Uint8Array(0)));
  return concat(parts);
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * Reads the uncompressed text chunks (tEXt, and iTXt without compression) of a PNG.
 * Compressed ones (zTXt, compressed iTXt) are skipped: this reader is synchronous.
 */
export function readPngText(bytes: Uint8Array): Record<string, string> {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) {
    throw new BadInputError('Not a PNG file (the PNG signature is missing).');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, string> = {};
  let offset = 8;
  while (offset + 12 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = latin1(bytes.subarray(offset + 4, offset + 8));
    const start = offset + 8;
    const end = start + length;
    if (end + 4 > bytes.length) throw new BadInputError(`PNG chunk ${type} is truncated.`);
    const data = bytes.subarray(start, end);
    if (type === 'tEXt') {
      const zero = data.indexOf(0);
      if (zero > 0) out[latin1(data.subarray(0, zero))] = latin1(data.subarray(zero + 1));
    } else if (type === 'iTXt') {
      const zero = data.indexOf(0);
      const compressed = data[zero + 1];
      const languageEnd = data.indexOf(0, zero + 3);
      const translatedEnd = languageEnd < 0 ? -1 : data.indexOf(0, languageEnd + 1);
      if (zero > 0 && compressed === 0 && translatedEnd >= 0) {
        out[latin1(data.subarray(0, zero))] = new TextDecoder().decode(data.subarray(translatedEnd + 1));
      }
    } else if (type === 'IEND') {
      break;
    }
    offset = end + 4;
  }
  return out;
}

/**
 * The text chunks that say which prompt, seed, settings, model and backend made an image, with
 * its negative and detail prompts when it had them, and for a vary the seeds of its scales.
 */
export function provenanceText(result: GenerateResult, software: string): Record<string, string> {
  return {
    prompt: result.prompt,
    ...(result.negativePrompt !== undefined ? { 'negative prompt': result.negativePrompt } : {}),
    ...(result.detailPrompt !== undefined ? { 'detail prompt': result.detailPrompt, 'detail from scale': String(result.detailFrom) } : {}),
    seed: String(result.seed),
    ...(result.fromScale !== undefined ? { 'from image, scale': String(result.fromScale) } : {}),
    ...(result.variedFrom !== undefined ? { 'varied from scale': String(result.variedFrom), 'scale seeds': result.tokens.seeds.join(',') } : {}),
    settings: JSON.stringify(result.settings),
    model: result.model,
    backend: result.backend,
    Software: software,
  };
}
