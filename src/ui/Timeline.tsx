import { isRunning } from '../app/runSlice';
import { PixelCanvas } from './PixelCanvas';
import { useApp } from './storeContext';

/** The per-scale previews of the last run; pick one (or use the slider) to look back. */
export function Timeline() {
  const frames = useApp((s) => s.frames);
  const selected = useApp((s) => s.selectedFrame);
  const selectFrame = useApp((s) => s.selectFrame);
  const running = useApp(isRunning);
  const vary = useApp((s) => s.vary);
  // Vary is offered on a finished image of the loaded model, one button per scale.
  const canVary = useApp((s) => !isRunning(s) && s.modelStatus === 'ready' && s.varySource?.model === s.modelInfo?.name && s.frames.at(-1)?.final === true);
  if (frames.length === 0) return null;
  const current = selected ?? frames.length - 1;

  return (
    <div className="timeline">
      <ol className="timeline-strip" aria-label="Timeline">
        {frames.map((frame, index) => (
          <li key={index}>
            <button
              type="button"
              className="thumb"
              aria-pressed={index === current}
              aria-label={`Show ${frame.final ? 'the final image' : `scale ${index + 1} (${frame.label})`}`}
              disabled={running}
              onClick={() => selectFrame(index === frames.length - 1 ? null : index)}
            >
              <PixelCanvas pixels={frame.pixels} size={48} label={frame.label} />
              <span>{frame.label}</span>
            </button>
            {canVary && !frame.final && (
              <button
                type="button"
                className="vary"
                aria-label={`Vary from scale ${index + 1}`}
                title={index === 0 ? 'Draw every scale again with a new seed' : `Keep scales 1 to ${index} and draw the rest with a new seed`}
                onClick={() => void vary(index + 1)}
              >
                Vary
              </button>
            )}
          </li>
        ))}
      </ol>
      <input
        type="range"
        className="scrubber"
        aria-label="Timeline position"
        min={0}
        max={frames.length - 1}
        value={running ? frames.length - 1 : current}
        disabled={running}
        onChange={(event) => {
          const index = Number(event.target.value);
          selectFrame(index === frames.length - 1 ? null : index);
        }}
      />
    </div>
  );
}
