import { useEffect, useState } from 'react';
import { downloadName, type GalleryEntry } from '../app/galleryEntry';
import { formatSeconds } from '../app/runStatus';
import { clampScaleFrom, describeTopK } from '../app/settingsSlice';
import { downloadBlob } from './download';
import { useApp } from './storeContext';

function useObjectUrl(blob: Blob): string | undefined {
  const [url, setUrl] = useState<string>();
  useEffect(() => {
    if (typeof URL.createObjectURL !== 'function') return;
    const next = URL.createObjectURL(blob);
    setUrl(next);
    return () => URL.revokeObjectURL(next);
  }, [blob]);
  return url;
}

function describeSettings(entry: GalleryEntry): string {
  const s = entry.settings;
  const parts = [`cfg ${s.cfg}`];
  if (s.topK) parts.push(`top-k ${describeTopK(s.topK)}`);
  if (s.topP) parts.push(`top-p ${s.topP}`);
  if (s.temperature !== 1) parts.push(`temp ${s.temperature}`);
  if (s.smooth) parts.push('smoothing');
  if (!s.residual) parts.push('no residual');
  return parts.join(' · ');
}

/** Vary a kept image of the loaded model from a chosen scale (its token maps are kept with it). */
function VaryEntry({ entry }: { entry: GalleryEntry }) {
  const varyEntry = useApp((s) => s.varyEntry);
  const scales = useApp((s) => (s.modelInfo?.name === entry.model ? s.modelInfo.scales.length : undefined));
  const ready = useApp((s) => s.modelStatus === 'ready');
  const [from, setFrom] = useState<number>();
  if (!entry.tokens || scales === undefined) return null;
  const fromScale = clampScaleFrom(from ?? Math.ceil(scales / 2), scales);
  return (
    <span className="vary-entry">
      <input
        type="number"
        aria-label={`Scale to vary “${entry.prompt}” from`}
        min={1}
        max={scales}
        value={fromScale}
        onChange={(e) => setFrom(clampScaleFrom(Number(e.target.value), scales))}
      />
      <button type="button" disabled={!ready} onClick={() => void varyEntry(entry.id, fromScale)} aria-label={`Vary “${entry.prompt}” from scale ${fromScale}`}>
        Vary
      </button>
    </span>
  );
}

function GalleryItem({ entry }: { entry: GalleryEntry }) {
  const url = useObjectUrl(entry.png);
  const rerun = useApp((s) => s.rerun);
  const deleteEntry = useApp((s) => s.deleteEntry);
  const ready = useApp((s) => s.modelStatus === 'ready');
  const when = new Date(entry.createdAt);

  return (
    <li className="gallery-item">
      {url ? <img src={url} alt={entry.prompt} width={entry.width} height={entry.height} /> : <div className="img-placeholder" />}
      <div className="gallery-meta">
        <p className="gallery-prompt">{entry.prompt}</p>
        {(entry.negativePrompt !== undefined || entry.detailPrompt !== undefined) && (
          <p className="gallery-details">
            {[
              entry.negativePrompt !== undefined ? `Negative: ${entry.negativePrompt}` : '',
              entry.detailPrompt !== undefined ? `Detail from scale ${entry.detailFrom}: ${entry.detailPrompt}` : '',
            ]
              .filter(Boolean)
              .join(' · ')}
          </p>
        )}
        <p className="gallery-details">
          Seed {entry.seed}
          {entry.variedFrom !== undefined ? ` (varied from scale ${entry.variedFrom})` : ''} · {describeSettings(entry)}
        </p>
        <p className="gallery-details">
          {entry.model} · {entry.backend.toUpperCase()} · {formatSeconds(entry.durationMs)} ·{' '}
          <time dateTime={when.toISOString()}>{when.toLocaleString()}</time>
        </p>
        <div className="gallery-actions">
          <button type="button" onClick={() => downloadBlob(entry.png, downloadName(entry))} aria-label={`Download “${entry.prompt}” as PNG`}>
            Download
          </button>
          <button type="button" onClick={() => void rerun(entry.id)} disabled={!ready} aria-label={`Re-run “${entry.prompt}”`}>
            Re-run
          </button>
          <VaryEntry entry={entry} />
          <button type="button" className="danger" onClick={() => void deleteEntry(entry.id)} aria-label={`Delete “${entry.prompt}”`}>
            Delete
          </button>
        </div>
      </div>
    </li>
  );
}

export function Gallery() {
  const gallery = useApp((s) => s.gallery);
  const unavailable = useApp((s) => s.galleryUnavailable);
  return (
    <section className="panel gallery" aria-labelledby="gallery-title">
      <div className="panel-head">
        <h2 id="gallery-title">Gallery</h2>
        <span className="muted">
          {gallery.length === 1 ? '1 image' : `${gallery.length} images`} · {unavailable ? 'not kept: this browser refuses storage' : 'kept in this browser'}
        </span>
      </div>
      {gallery.length === 0 ? (
        <p className="muted empty">
          {unavailable
            ? 'Finished images appear here until the page is closed: this browser does not let the page keep them.'
            : 'Finished images are kept here, with their prompt, seed and settings.'}
        </p>
      ) : null}
      <ul aria-label="Gallery" className="gallery-grid">
        {gallery.map((entry) => (
          <GalleryItem key={entry.id} entry={entry} />
        ))}
      </ul>
    </section>
  );
}
