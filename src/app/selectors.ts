// Derived values the components show; computed from the store, never stored twice.
import type { LoadPhase } from '../engine/index';
import { progressFraction, statusText } from './runStatus';
import { isRunning } from './runSlice';
import type { AppState, Frame } from './storeTypes';

/** The engine's, so the page writes sizes one way (its preflight messages included). */
import { formatBytes } from '../engine/index';
export { describeNeeds, formatBytes } from '../engine/index';

export const PHASE_NAMES: Record<LoadPhase, string> = {
  manifest: 'Manifest',
  download: 'Download',
  upload: 'Upload to GPU',
  warmup: 'Warm-up',
};

/** The import's steps, as the model list names them; the last is the load of the package. */
export const IMPORT_STEPS = [
  { key: 'download', name: 'Download and convert' },
  { key: 'verify', name: 'Verify' },
  { key: 'compile', name: 'Compile (load the imported model)' },
] as const;

/** "12.0 MB of 40.0 MB · 3.1 MB/s · 9 s left", for one file of an import. */
export function importRate(done: number, total: number, bytesPerSecond?: number, secondsLeft?: number): string {
  const parts = [`${formatBytes(done)} of ${formatBytes(total)}`];
  if (bytesPerSecond) parts.push(`${formatBytes(bytesPerSecond)}/s`);
  if (secondsLeft !== undefined && done < total) parts.push(`${secondsLeft < 60 ? `${Math.ceil(secondsLeft)} s` : `${Math.ceil(secondsLeft / 60)} min`} left`);
  return parts.join(' · ');
}

export const PHASE_ORDER: LoadPhase[] = ['manifest', 'download', 'upload', 'warmup'];

/** The one live status line of the page: model loading first, then the run. */
export function pageStatus(state: AppState): string {
  if (state.modelStatus === 'loading') {
    const phase = state.loadPhase ? PHASE_NAMES[state.loadPhase].toLowerCase() : 'starting';
    return `Loading model (${phase})`;
  }
  if (state.modelStatus === 'error' && !isRunning(state)) return 'Model not loaded';
  return statusText(state.run);
}

export function runPercent(state: AppState): number {
  return Math.round(progressFraction(state.run) * 100);
}

/** The phases this load runs, in order: all but those reported as skipped (warm-up on WASM). */
export function runningPhases(state: AppState): LoadPhase[] {
  return PHASE_ORDER.filter((p) => !state.loadPhases[p]?.skipped);
}

/** Loading progress over the phases that run, as a percentage; each counts equally. */
export function loadPercent(state: AppState): number {
  const phases = runningPhases(state);
  const reached = phases.filter((p) => state.loadPhases[p]);
  if (reached.length === 0) return 0;
  const current = reached[reached.length - 1];
  const report = state.loadPhases[current]!;
  const within = report.total > 0 ? Math.min(1, report.loaded / report.total) : 0;
  return Math.round(((phases.indexOf(current) + within) / phases.length) * 100);
}

/** The frame on the canvas: the one picked on the timeline, else the newest. */
export function shownFrame(state: AppState): Frame | undefined {
  if (state.selectedFrame !== null && !isRunning(state)) return state.frames[state.selectedFrame];
  return state.frames[state.frames.length - 1];
}
