// What a person reads while HART paints: the status line and the progress fraction are both
// derived from the same run state, so they can never disagree.

export type RunPhase = 'idle' | 'starting' | 'scales' | 'refining' | 'done' | 'cancelled' | 'error';

export interface RunProgress {
  phase: RunPhase;
  /** Scales finished so far and the number of scales (K). */
  scalesDone: number;
  scaleCount: number;
  /** Whether residual diffusion runs after the last scale. */
  refine: boolean;
  /** Diffusion steps finished and planned (0 until the first step reports). */
  stepsDone: number;
  stepCount: number;
  /** True once the decoder has produced the final image. */
  decoded: boolean;
  /** Wall time of the finished run, in milliseconds. */
  elapsedMs?: number;
  /** Which image of a multi-image run is being painted (0-based) and how many there are. */
  imageIndex: number;
  imageCount: number;
}

export const IDLE_PROGRESS: RunProgress = {
  phase: 'idle',
  scalesDone: 0,
  scaleCount: 0,
  refine: false,
  stepsDone: 0,
  stepCount: 0,
  decoded: false,
  imageIndex: 0,
  imageCount: 1,
};

export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** The text of the live status region: "Scale k of K", "Refining", "Done in N.N s". */
export function statusText(progress: RunProgress): string {
  switch (progress.phase) {
    case 'idle':
      return 'Ready';
    case 'starting':
      return 'Encoding the prompt';
    case 'scales': {
      // Names the scale whose preview is on screen, so the text and the canvas agree.
      const k = Math.max(1, progress.scalesDone);
      return `Scale ${k} of ${progress.scaleCount}`;
    }
    case 'refining':
      return 'Refining';
    case 'done':
      return `Done in ${formatSeconds(progress.elapsedMs ?? 0)}`;
    case 'cancelled':
      return 'Cancelled';
    case 'error':
      return 'Failed';
  }
}

/**
 * Fraction of the whole request done, in [0, 1]. Within one image the scales take most of the
 * bar, the diffusion steps (when on) a quarter and the decoder the rest; the number of steps is
 * only known once the first one reports, so weights keep the bar from ever moving backwards.
 */
export function progressFraction(progress: RunProgress): number {
  if (progress.phase === 'done') return 1;
  if (progress.phase === 'idle' || progress.scaleCount === 0) return 0;
  const refineWeight = progress.refine ? 0.25 : 0;
  const decodeWeight = 0.05;
  const scaleWeight = 1 - refineWeight - decodeWeight;
  const scales = Math.min(progress.scalesDone / progress.scaleCount, 1);
  const steps = progress.stepCount > 0 ? Math.min(progress.stepsDone / progress.stepCount, 1) : 0;
  const inImage = scaleWeight * scales + refineWeight * steps + (progress.decoded ? decodeWeight : 0);
  const images = Math.max(1, progress.imageCount);
  return Math.min(1, (progress.imageIndex + inImage) / images);
}
