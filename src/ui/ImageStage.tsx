import { formatSeconds } from '../app/runStatus';
import { isRunning } from '../app/runSlice';
import { pageStatus, runPercent, shownFrame } from '../app/selectors';
import { PixelCanvas } from './PixelCanvas';
import { useStartImageFile } from './SettingsPanel';
import { Timeline } from './Timeline';
import { useApp } from './storeContext';

export function ImageStage() {
  const size = useApp((s) => s.modelInfo?.imageSize ?? 256);
  const frame = useApp(shownFrame);
  const status = useApp(pageStatus);
  const percent = useApp(runPercent);
  const running = useApp(isRunning);
  const imageIndex = useApp((s) => s.run.imageIndex);
  const imageCount = useApp((s) => s.run.imageCount);
  const takeFile = useStartImageFile();

  return (
    <section className="stage" aria-label="Image">
      {/* A drop target: an image dropped here is the image Generate starts from. */}
      <div
        className={`canvas-frame${running ? ' is-running' : ''}`}
        data-testid="canvas-drop"
        onDragOver={(e) => {
          if (e.dataTransfer?.types.includes('Files')) e.preventDefault();
        }}
        onDrop={(e) => {
          e.preventDefault();
          void takeFile(e.dataTransfer?.files[0]);
        }}
      >
        <PixelCanvas pixels={frame?.pixels} size={size} label="Generated image" className={`main-canvas${frame?.final ? ' is-final' : ''}`} />
        {!frame && <p className="canvas-empty">Your image appears here, scale by scale.</p>}
        {frame && <span className="frame-tag">{frame.label}</span>}
      </div>
      <div className="run-meter">
        <p role="status" className="status">
          {status}
        </p>
        {running && imageCount > 1 && (
          <span className="image-count">
            Image {imageIndex + 1} of {imageCount}
          </span>
        )}
        <RunTimes />
      </div>
      <div
        className="progress"
        role="progressbar"
        aria-label="Generation progress"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
      >
        <div className="progress-fill" style={{ width: `${percent}%` }} />
      </div>
      <Timeline />
    </section>
  );
}

function RunTimes() {
  const first = useApp((s) => s.firstPreviewMs);
  const phase = useApp((s) => s.run.phase);
  const total = useApp((s) => s.run.elapsedMs);
  const warnings = useApp((s) => s.warnings);
  return (
    <p className="run-times">
      {first !== undefined && <span data-metric="first-preview">First preview {formatSeconds(first)}</span>}
      {phase === 'done' && total !== undefined && <span data-metric="final">Final image {formatSeconds(total)}</span>}
      {warnings.map((w) => (
        <span key={w} className="warn">
          {w}
        </span>
      ))}
    </p>
  );
}
