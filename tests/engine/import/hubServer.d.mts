// Types of hubServer.mjs for the TypeScript tests.
export type HubFault =
  | { kind: 'missing' }
  | { kind: 'error'; times?: number }
  | { kind: 'cut'; after: number; times?: number }
  | { kind: 'truncate'; bytes: number }
  | { kind: 'config'; values: Record<string, unknown> };

export interface Hub {
  url: string;
  requests: { path: string; range: string }[];
  served: Map<string, number>;
  fault(key: string, fault: HubFault | undefined): void;
  clearFaults(): void;
  bytesServed(key?: string): number;
  close(): Promise<void>;
}

export function startHub(options: { repos: Record<string, string>; static?: Record<string, string>; port?: number }): Promise<Hub>;
