// Reads the text chunks (tEXt and uncompressed iTXt) of a PNG file, written independently of the
// app's encoder so the e2e check does not trust the code it checks.
export function pngTextChunks(bytes) {
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!signature.every((b, i) => bytes[i] === b)) throw new Error('not a PNG file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = {};
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === 'tEXt') {
      const zero = data.indexOf(0);
      text[Buffer.from(data.subarray(0, zero)).toString('latin1')] = Buffer.from(data.subarray(zero + 1)).toString('latin1');
    } else if (type === 'iTXt') {
      const zero = data.indexOf(0);
      const key = Buffer.from(data.subarray(0, zero)).toString('latin1');
      // Skip compression flag, method, language tag and translated keyword.
      let p = zero + 3;
      p = data.indexOf(0, p) + 1;
      p = data.indexOf(0, p) + 1;
      text[key] = Buffer.from(data.subarray(p)).toString('utf8');
    }
    if (type === 'IEND') break;
    offset += 12 + length;
  }
  return text;
}
