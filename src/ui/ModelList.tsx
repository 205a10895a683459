// The model panel's list of models the app offers (the catalog): what each is, how much it
// downloads and keeps, what a device needs for it, and the action that gets it. A model served
// as a package loads; one to import is first checked against this device, so a person learns
// why a device cannot run it before any byte is fetched.
import type { CatalogEntry } from '../engine/index';
import { describeNeeds, formatBytes, importRate, IMPORT_STEPS } from '../app/selectors';
import { shownModelUrl } from '../app/pageOptions';
import type { CatalogCheck, CatalogImport } from '../app/storeTypes';
import { useApp } from './storeContext';

function sizes(entry: CatalogEntry): string {
  const download = `${entry.source.kind === 'import' ? 'about ' : ''}${formatBytes(entry.downloadBytes)} to download`;
  return entry.diskBytes === entry.downloadBytes ? download : `${download}, ${formatBytes(entry.diskBytes)} kept`;
}

function CheckResult({ check }: { check?: CatalogCheck }) {
  if (!check) return null;
  if (check.status === 'checking') return <p className="muted small" aria-live="polite">Checking this device…</p>;
  if (check.status === 'failed') return <p className="small cache-error" aria-live="polite">The check failed: {check.message}</p>;
  const { result } = check;
  if (result.ok) return <p className="small" aria-live="polite">This device can run it ({result.backend.backend}).</p>;
  return (
    <div className="small cache-error" aria-live="polite">
      <p>This device cannot run it:</p>
      <ul>
        {result.problems.map((problem) => (
          <li key={problem}>{problem}</li>
        ))}
      </ul>
    </div>
  );
}

function ImportStatus({ entry, state }: { entry: CatalogEntry; state?: CatalogImport }) {
  const cancelImport = useApp((s) => s.cancelImport);
  if (!state || state.status === 'refused' || state.status === 'checking') return null;
  if (state.status === 'failed') return <p className="small cache-error" role="alert">Import failed: {state.message}</p>;
  if (state.status === 'cancelled') return <p className="small muted" aria-live="polite">The import was cancelled; the files it finished are kept for the next one.</p>;
  if (state.status === 'done') {
    const { outcome } = state;
    const kept = outcome.kept ? `, ${outcome.kept} kept from before` : '';
    return <p className="small" aria-live="polite">Imported {entry.name}: {outcome.files} files, {formatBytes(outcome.bytesWritten)} written in {outcome.seconds.toFixed(1)} s{kept}.</p>;
  }
  const progress = state.status === 'importing' ? state.progress : undefined;
  const step = state.status === 'loading' ? 'compile' : (progress?.phase ?? 'download');
  const at = IMPORT_STEPS.findIndex((s) => s.key === step);
  return (
    <div className="load-phases import-progress" aria-label={`Import of ${entry.name}`}>
      <button type="button" aria-label={`Cancel import of ${entry.name}`} onClick={() => void cancelImport(entry.id)}>
        Cancel
      </button>
      <ol>
        {IMPORT_STEPS.map((s, i) => {
          const state = i < at ? 'done' : i === at ? 'active' : 'pending';
          let detail = state === 'done' ? 'done' : state === 'pending' ? 'waiting' : 'starting';
          if (state === 'active' && s.key !== 'compile' && progress) {
            detail = `${progress.file} (${progress.index + 1} of ${progress.count}) · ${importRate(progress.done, progress.total, progress.bytesPerSecond, progress.secondsLeft)}`;
          }
          if (state === 'active' && s.key === 'compile') detail = 'loading the package from this browser\'s storage';
          return (
            <li key={s.key} className={`phase phase-${state}`}>
              <span className="phase-name">{s.name}</span>
              <span className="phase-detail">{detail}</span>
            </li>
          );
        })}
      </ol>
    </div>
  );
}

export function ModelList() {
  const catalog = useApp((s) => s.catalog);
  const error = useApp((s) => s.catalogError);
  const checks = useApp((s) => s.catalogChecks);
  const loadModel = useApp((s) => s.loadModel);
  const checkEntry = useApp((s) => s.checkCatalogEntry);
  const imports = useApp((s) => s.catalogImports);
  const importEntry = useApp((s) => s.importCatalogEntry);
  const loading = useApp((s) => s.modelStatus === 'loading');
  if (catalog.length === 0 && !error) return null;

  return (
    <div className="model-list" role="group" aria-labelledby="model-list-title">
      <h3 id="model-list-title">Models</h3>
      {error && <p className="small cache-error">{error}</p>}
      <ul className="cached-list">
        {catalog.map((entry) => (
          <li key={entry.id} className="catalog-model">
            <div className="cached-model">
              <div className="cached-text">
                <span className="cached-name" title={entry.description}>
                  {entry.name}
                </span>
                <span className="muted small">
                  {sizes(entry)} · needs {describeNeeds(entry.needs)}
                </span>
              </div>
              {entry.source.kind === 'package' ? (
                <button
                  type="button"
                  disabled={loading}
                  aria-label={`Load ${entry.name}`}
                  onClick={() => entry.source.kind === 'package' && void loadModel({ kind: 'url', url: entry.source.url }, shownModelUrl(entry.source.url, window.location.href))}
                >
                  Load
                </button>
              ) : (
                <span className="catalog-actions">
                  <button type="button" disabled={checks[entry.id]?.status === 'checking'} aria-label={`Check this device for ${entry.name}`} onClick={() => void checkEntry(entry.id)}>
                    Check device
                  </button>
                  <button
                    type="button"
                    disabled={loading || ['checking', 'importing', 'loading'].includes(imports[entry.id]?.status ?? '')}
                    aria-label={`Import ${entry.name}`}
                    title="Download the published checkpoint and convert it into this browser's storage, then load it"
                    onClick={() => void importEntry(entry.id)}
                  >
                    Import
                  </button>
                </span>
              )}
            </div>
            <CheckResult check={checks[entry.id]} />
            <ImportStatus entry={entry} state={imports[entry.id]} />
          </li>
        ))}
      </ul>
    </div>
  );
}
