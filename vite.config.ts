/// <reference types="vitest/config" />
import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';
import { CONTENT_SECURITY_POLICY, ISOLATION_HEADERS, headersFile } from './deploy/headers.mjs';

// COOP/COEP make the page cross-origin isolated so onnxruntime-web may use wasm threads.
const isolation = ISOLATION_HEADERS;

/**
 * The built app carries its Content-Security-Policy in a <meta> (any static host applies it) and
 * a dist/_headers with the header form and COOP/COEP (hosts that read it). Build only: the dev
 * server injects inline scripts (React refresh) that the policy forbids.
 */
function deployHeaders(): Plugin {
  return {
    name: 'hart-deploy-headers',
    apply: 'build',
    transformIndexHtml: {
      order: 'pre',
      handler: (html) => ({
        html,
        tags: [{ tag: 'meta', attrs: { 'http-equiv': 'Content-Security-Policy', content: CONTENT_SECURITY_POLICY }, injectTo: 'head-prepend' }],
      }),
    },
    generateBundle() {
      this.emitFile({ type: 'asset', fileName: '_headers', source: headersFile() });
    },
  };
}

export default defineConfig({
  plugins: [react(), deployHeaders()],
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
