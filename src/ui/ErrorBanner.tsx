import { useApp } from './storeContext';

/** Errors in words, in the page: the model file that failed, the adapter that is missing. */
export function ErrorBanner() {
  const modelError = useApp((s) => s.modelError);
  const runError = useApp((s) => s.runError);
  const galleryError = useApp((s) => s.galleryError);
  const pageError = useApp((s) => s.pageError);
  const errors = [
    pageError && { title: 'The page address', failure: pageError },
    modelError && { title: 'The model could not be loaded', failure: modelError },
    runError && { title: runError.code === 'worker-crashed' ? 'The engine restarted' : 'The image could not be made', failure: runError },
    galleryError && { title: 'Gallery', failure: galleryError },
  ].filter((e): e is NonNullable<typeof e> => Boolean(e));
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
