// A skeleton's manifest template (docs/model-package.md §5.5): the converter's manifest.json
// with the data-dependent fields null. They are filled in the text itself, so every other byte
// stays as Python's json.dump wrote it (its number formatting is not JSON.stringify's).
import { CheckpointError } from '../errors';

export interface TemplateFile {
  path: string;
  bytes: number | null;
  sha256: string | null;
  dtype: string;
}

export interface FilledFile {
  bytes: number;
  sha256: string;
}

/** The template's `files` entries, in order. */
export function templateFiles(template: string, where: string): TemplateFile[] {
  let parsed: { files?: TemplateFile[] };
  try {
    parsed = JSON.parse(template);
  } catch (error) {
    throw new CheckpointError(`is not valid JSON (${(error as Error).message})`, where);
  }
  if (!Array.isArray(parsed.files)) throw new CheckpointError('has no files list', where);
  return parsed.files;
}

function replaceOnce(text: string, from: number, needle: string, value: string, where: string, what: string): [string, number] {
  const at = text.indexOf(needle, from);
  if (at < 0) throw new CheckpointError(`has no ${what} to fill`, where);
  return [text.slice(0, at) + value + text.slice(at + needle.length), at + value.length];
}

/** The manifest: prefixIds, padId and each file's size and sha256 written into the template. */
export function fillTemplate(template: string, prefixIds: number[], padId: number, files: FilledFile[], where: string): string {
  // json.dump(indent=2) at the depth of textEncoder.prefixIds.
  const ids = prefixIds.length ? `[\n${prefixIds.map((id) => `      ${id}`).join(',\n')}\n    ]` : '[]';
  let text = template;
  [text] = replaceOnce(text, 0, '"prefixIds": null', `"prefixIds": ${ids}`, where, 'textEncoder.prefixIds');
  [text] = replaceOnce(text, 0, '"padId": null', `"padId": ${padId}`, where, 'textEncoder.padId');
  const list = text.indexOf('"files": [');
  if (list < 0) throw new CheckpointError('has no files list', where);
  let cursor = list;
  const entries = templateFiles(template, where);
  if (entries.length !== files.length) throw new CheckpointError(`lists ${entries.length} files, ${files.length} were written`, where);
  entries.forEach((entry, i) => {
    // Each entry is a flat object: fill inside it only.
    const start = text.indexOf('{', cursor + 1);
    const end = text.indexOf('}', start);
    let body = text.slice(start, end);
    if (entry.bytes === null) body = body.replace('"bytes": null', `"bytes": ${files[i].bytes}`);
    if (entry.sha256 === null) body = body.replace('"sha256": null', `"sha256": "${files[i].sha256}"`);
    text = text.slice(0, start) + body + text.slice(end);
    cursor = start + body.length;
  });
  return text;
}
