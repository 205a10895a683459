import { useRef, useState, type FormEvent } from 'react';
import { formatBytes, loadPercent, PHASE_NAMES, PHASE_ORDER } from '../app/selectors';
import type { LoadProgress } from '../engine/index';
import { DownloadedModels } from './DownloadedModels';
import { ModelList } from './ModelList';
import { useApp } from './storeContext';

type DirectoryPicker = (options?: { mode?: 'read' }) => Promise<FileSystemDirectoryHandle>;

function phaseDetail(progress: LoadProgress): string {
  if (progress.skipped) return `skipped: ${progress.skipped}`;
  const file = progress.file ? `${progress.file} · ` : '';
  if (progress.phase === 'download') return `${file}${formatBytes(progress.loaded)} of ${formatBytes(progress.total)}`;
  return `${file}${progress.loaded} of ${progress.total}`;
}

function LoadPhases() {
  const phases = useApp((s) => s.loadPhases);
  const current = useApp((s) => s.loadPhase);
  const loading = useApp((s) => s.modelStatus === 'loading');
  const percent = useApp(loadPercent);
  const cancelLoad = useApp((s) => s.cancelLoad);
  if (!loading) return null;
  return (
    <div className="load-phases">
      <button type="button" aria-label="Cancel loading" title="Stop loading; the model loaded before stays" onClick={() => void cancelLoad()}>
        Cancel
      </button>
      <div className="progress small" role="progressbar" aria-label="Model loading" aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent}>
        <div className="progress-fill" style={{ width: `${percent}%` }} />
      </div>
      <ol>
        {PHASE_ORDER.map((phase) => {
          const report = phases[phase];
          const state = !report ? 'pending' : report.skipped ? 'skipped' : phase === current ? 'active' : 'done';
          return (
            <li key={phase} className={`phase phase-${state}`}>
              <span className="phase-name">{PHASE_NAMES[phase]}</span>
              <span className="phase-detail">{report ? phaseDetail(report) : 'waiting'}</span>
            </li>
          );
        })}
      </ol>
    </div>
  );
}

export function ModelPanel() {
  const info = useApp((s) => s.modelInfo);
  const label = useApp((s) => s.modelLabel);
  const status = useApp((s) => s.modelStatus);
  const pendingLabel = useApp((s) => s.pendingLabel);
  const loadModel = useApp((s) => s.loadModel);
  const loadModelUrl = useApp((s) => s.loadModelUrl);
  const [url, setUrl] = useState('');
  const folderInput = useRef<HTMLInputElement>(null);

  const loadUrl = (event: FormEvent) => {
    event.preventDefault();
    // Absolute or relative to the page, as `?model=` takes it; the store refuses what is no http(s) URL.
    if (url.trim()) void loadModelUrl(url, window.location.href);
  };

  const openFolder = async () => {
    const picker = (window as unknown as { showDirectoryPicker?: DirectoryPicker }).showDirectoryPicker;
    if (!picker) {
      folderInput.current?.click();
      return;
    }
    try {
      const handle = await picker({ mode: 'read' });
      void loadModel({ kind: 'directory', handle }, handle.name);
    } catch (error) {
      // Closing the picker is not an error worth showing.
      if ((error as { name?: string }).name !== 'AbortError') folderInput.current?.click();
    }
  };

  return (
    <section className="panel model" aria-labelledby="model-title">
      <div className="panel-head">
        <h2 id="model-title">Model</h2>
        <span className={`dot dot-${status}`} aria-hidden="true" />
      </div>
      {info ? (
        <div className="model-info">
          <p className="model-name">{info.name}</p>
          <p className="muted">{info.description}</p>
          <p className="muted small">
            {info.imageSize}×{info.imageSize} px · {info.scales.length} scales ({info.scales.join(', ')}) · from {label}
          </p>
          {status === 'loading' && <p className="muted">Loading {pendingLabel}… (this model stays usable until it is ready)</p>}
        </div>
      ) : (
        <p className="muted">
          {status === 'loading' ? `Loading ${pendingLabel ?? label}…` : status === 'error' ? `${label} could not be loaded (see the message above).` : 'No model loaded.'}
        </p>
      )}
      <LoadPhases />
      <form className="model-url" onSubmit={loadUrl}>
        <label htmlFor="model-url">Model URL</label>
        <div className="row">
          <input id="model-url" type="text" inputMode="url" autoComplete="off" spellCheck={false} placeholder="https://…/model-folder/ or /models/<name>/" value={url} onChange={(e) => setUrl(e.target.value)} />
          <button type="submit" disabled={!url.trim()}>
            Load
          </button>
        </div>
      </form>
      <div className="row">
        <button type="button" onClick={() => void openFolder()}>
          Open local folder…
        </button>
        <input
          ref={folderInput}
          type="file"
          className="visually-hidden"
          tabIndex={-1}
          aria-label="Model folder"
          multiple
          {...({ webkitdirectory: '' } as Record<string, string>)}
          onChange={(event) => {
            const files = [...(event.target.files ?? [])];
            if (files.length === 0) return;
            const folder = (files[0] as File & { webkitRelativePath?: string }).webkitRelativePath?.split('/')[0] || 'local folder';
            void loadModel({ kind: 'files', files }, folder);
            event.target.value = '';
          }}
        />
      </div>
      <ModelList />
      <DownloadedModels />
    </section>
  );
}
