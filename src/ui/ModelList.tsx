// The model panel's list of models the app offers (the catalog): what each is, how much it
// downloads and keeps, what a device needs for it, and the action that gets it. A model served
// as a package loads; one to import is first checked against this device, so a person learns
// why a device cannot run it before any byte is fetched.
import type { CatalogEntry } from '../engine/index';
import { describeNeeds, formatBytes } from '../app/selectors';
import { shownModelUrl } from '../app/pageOptions';
import type { CatalogCheck } from '../app/storeTypes';
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

export function ModelList() {
  const catalog = useApp((s) => s.catalog);
  const error = useApp((s) => s.catalogError);
  const checks = useApp((s) => s.catalogChecks);
  const loadModel = useApp((s) => s.loadModel);
  const checkEntry = useApp((s) => s.checkCatalogEntry);
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
                <button type="button" disabled={checks[entry.id]?.status === 'checking'} aria-label={`Check this device for ${entry.name}`} onClick={() => void checkEntry(entry.id)}>
                  Check device
                </button>
              )}
            </div>
            <CheckResult check={checks[entry.id]} />
          </li>
        ))}
      </ul>
    </div>
  );
}
