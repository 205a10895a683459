// A kept image and the PNG text chunks that carry its provenance, so a downloaded file says
// which prompt, seed, settings and model made it.
import { provenanceText, type BackendName, type GenerateResult, type SamplingSettings, type ScaleTokens } from '../engine/index';

export interface GalleryEntry {
  id: string;
  prompt: string;
  /** Set when the image had them (entries kept before they existed have none). */
  negativePrompt?: string;
  detailPrompt?: string;
  detailFrom?: number;
  variedFrom?: number;
  seed: number;
  settings: SamplingSettings;
  /** Its token maps per scale, so it can be varied without running it again. */
  tokens?: ScaleTokens;
  model: string;
  backend: BackendName;
  /** Epoch milliseconds when the image was finished. */
  createdAt: number;
  /** Wall time of the run that made it. */
  durationMs: number;
  width: number;
  height: number;
  /** The PNG file, metadata included. */
  png: Blob;
}

export function pngTextFor(result: GenerateResult, createdAt: number): Record<string, string> {
  return { ...provenanceText(result, 'HART Web'), created: new Date(createdAt).toISOString() };
}

/** A file name a person can recognise: the prompt's first words and the seed. */
export function downloadName(entry: Pick<GalleryEntry, 'prompt' | 'seed'>): string {
  const slug = entry.prompt
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48)
    .replace(/-+$/, '');
  return `hart-${slug || 'image'}-${entry.seed}.png`;
}
