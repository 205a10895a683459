/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// COOP/COEP make the page cross-origin isolated so onnxruntime-web may use wasm threads.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  plugins: [react()],
  worker: { format: 'es' },
  optimizeDeps: {
    exclude: ['onnxruntime-web'],
    // Crawl the worker too: its dependencies (the tokenizer) found late would make the dev server
    // re-optimize and reload the page in the middle of the first model load.
    entries: ['index.html', 'workers/engine.worker.ts'],
  },
  server: { headers: isolation },
  preview: { headers: isolation },
  test: {
    include: ['tests/**/*.test.ts', 'tests/**/*.test.tsx'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
