import { useApp } from './storeContext';

/** Errors in words, in the page: the model file that failed, the adapter that is missing. */
export function ErrorBanner() {
  const modelError = useApp((s) => s.modelError);
  const runError = useApp((s) => s.runError);
  const galleryError = useApp((s) => s.galleryError);
  const pageError = useApp((s) => s.pageError);
  const storageWarning = useApp((s) => s.modelInfo?.storageWarning);
  const errors: Array<{ title: string; failure: { message: string } }> = [
    pageError ? { title: 'The page address', failure: pageError } : undefined,
    modelError ? { title: 'The model could not be loaded', failure: modelError } : undefined,
    runError ? { title: runError.code === 'worker-crashed' ? 'The engine restarted' : 'The image could not be made', failure: runError } : undefined,
    galleryError ? { title: 'Gallery', failure: galleryError } : undefined,
    storageWarning ? { title: 'Not kept for offline use', failure: { message: storageWarning } } : undefined,
  ].filter((e) => e !== undefined);
  if (errors.length === 0) return null;
  return (
    <div role="alert" className="error-banner">
      {errors.map(({ title, failure }) => (
        <p key={title}>
          <strong>{title}.</strong> {failure.message}
        </p>
      ))}
    </div>
  );
}
