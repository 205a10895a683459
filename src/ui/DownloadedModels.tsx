// The model panel's list of packages this browser keeps, each with Open and Delete buttons, and how
// much of the browser's storage is used.
import { loadedBaseUrl } from '../app/cacheSlice';
import { formatBytes } from '../app/selectors';
import { shownModelUrl } from '../app/pageOptions';
import type { StorageEstimate } from '../app/modelCache';
import { useApp } from './storeContext';

function storageLine(estimate: StorageEstimate | undefined): string | undefined {
  if (estimate?.usage === undefined) return undefined;
  const quota = estimate.quota ? ` of ${formatBytes(estimate.quota)} available` : '';
  return `This site uses ${formatBytes(estimate.usage)}${quota}.`;
}

export function DownloadedModels() {
  const models = useApp((s) => s.cachedModels);
  const listed = useApp((s) => s.cacheListed);
  const estimate = useApp((s) => s.storageEstimate);
  const persistent = useApp((s) => s.storagePersistent);
  const deleting = useApp((s) => s.deletingModel);
  const notice = useApp((s) => s.cacheNotice);
  const error = useApp((s) => s.cacheError);
  const loaded = useApp(loadedBaseUrl);
  const deleteModel = useApp((s) => s.deleteCachedModel);
  const loadModel = useApp((s) => s.loadModel);
  const loading = useApp((s) => s.modelStatus === 'loading');
  const storage = storageLine(estimate);

  return (
    <div className="downloaded-models" role="group" aria-labelledby="downloaded-title">
      <h3 id="downloaded-title">Downloaded models</h3>
      {models.length > 0 ? (
        <ul className="cached-list">
          {models.map((model) => {
            const name = model.name ?? model.baseUrl;
            return (
              <li key={model.baseUrl} className="cached-model">
                <div className="cached-text">
                  <span className="cached-name" title={model.baseUrl}>
                    {name}
                  </span>
                  <span className="muted small">
                    {formatBytes(model.bytes)}
                    {model.offline ? ' · available offline' : ' · partly downloaded'}
                    {model.baseUrl === loaded ? ' · loaded now' : ''}
                  </span>
                </div>
                <button
                  type="button"
                  disabled={loading}
                  aria-label={`Open ${name}`}
                  onClick={() => void loadModel({ kind: 'url', url: model.baseUrl }, shownModelUrl(model.baseUrl, window.location.href))}
                >
                  Open
                </button>
                <button
                  type="button"
                  className="danger"
                  disabled={deleting !== undefined}
                  aria-label={`Delete ${name} from this browser`}
                  onClick={() => void deleteModel(model.baseUrl)}
                >
                  {deleting === model.baseUrl ? 'Deleting…' : 'Delete'}
                </button>
              </li>
            );
          })}
        </ul>
      ) : (
        listed && <p className="muted small">No models are stored in this browser.</p>
      )}
      {notice && (
        <p className="small" aria-live="polite">
          {notice}
        </p>
      )}
      {error && <p className="small cache-error">{error}</p>}
      {(storage || persistent) && (
        <p className="muted small">
          {storage}
          {storage && persistent ? ' ' : ''}
          {persistent ? 'Storage is persistent.' : ''}
        </p>
      )}
    </div>
  );
}
