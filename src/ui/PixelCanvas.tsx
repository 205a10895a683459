import { useLayoutEffect, useRef } from 'react';
import type { ImagePixels } from '../engine/index';
import { drawPixels } from './drawPixels';

interface Props {
  pixels?: ImagePixels;
  size: number;
  label: string;
  className?: string;
}

/** A canvas showing one frame. Drawn in a layout effect so the frame is on screen in the same commit as the status text that names it. */
export function PixelCanvas({ pixels, size, label, className }: Props) {
  const ref = useRef<HTMLCanvasElement>(null);
  useLayoutEffect(() => {
    const canvas = ref.current;
    if (!canvas) return;
    if (pixels) drawPixels(canvas, pixels);
    else canvas.getContext('2d')?.clearRect(0, 0, canvas.width, canvas.height);
  }, [pixels, size]);
  return <canvas ref={ref} width={size} height={size} role="img" aria-label={label} className={className} />;
}
