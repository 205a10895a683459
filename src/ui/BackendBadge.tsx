import { useApp } from './storeContext';

const NAMES = { webgpu: 'WebGPU', wasm: 'WASM', cpu: 'CPU' } as const;

/** Which backend runs the graphs, and why (always said when WebGPU is not the one). */
export function BackendBadge() {
  const backend = useApp((s) => s.modelInfo?.backend);
  const choice = useApp((s) => s.backendChoice);
  if (!backend) return <span className="badge muted">Backend: {choice === 'auto' ? 'choosing…' : choice}</span>;
  const name = NAMES[backend.backend];
  // The engine's reason may open with the backend's name ("WASM, because …"); the badge already shows it.
  const reason = backend.reason.startsWith(`${name}, `) ? backend.reason.slice(name.length + 2) : backend.reason;
  return (
    <span className={`badge badge-${backend.backend}`} title={backend.reason}>
      <strong>{name}</strong>
      {backend.fp16 && <span className="badge-extra">fp16</span>}
      <span className="badge-reason">{reason}</span>
    </span>
  );
}
