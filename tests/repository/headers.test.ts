// The headers the built app asks of its host (deploy/headers.mjs): a policy that allows no inline
// script and no JavaScript eval, and an index.html whose scripts are all files.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_HEADER, headersFile } from '../../deploy/headers.mjs';

const root = path.resolve(import.meta.dirname, '../..');

function directives(policy: string): Map<string, string[]> {
  return new Map(policy.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values]));
}

describe('deploy headers', () => {
  it('the Content-Security-Policy allows no inline script and no eval, only the WebAssembly compile onnxruntime-web needs', () => {
    for (const policy of [CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_HEADER]) {
      const d = directives(policy);
      expect(d.get('script-src')).toEqual(["'self'", "'wasm-unsafe-eval'"]);
      expect(d.get('worker-src')).toEqual(["'self'"]);
      expect(d.get('default-src')).toEqual(["'self'"]);
      expect(d.get('object-src')).toEqual(["'none'"]);
      expect(policy).not.toMatch(/'unsafe-inline'|'unsafe-eval'/);
    }
    // A <meta> cannot carry frame-ancestors (browsers ignore it there and warn); the header does.
    expect(directives(CONTENT_SECURITY_POLICY).has('frame-ancestors')).toBe(false);
    expect(directives(CONTENT_SECURITY_POLICY_HEADER).get('frame-ancestors')).toEqual(["'none'"]);
  });

  it('dist/_headers sends COOP, COEP and the policy for every path', () => {
    expect(headersFile().split('\n')).toEqual([
      '/*',
      '  Cross-Origin-Opener-Policy: same-origin',
      '  Cross-Origin-Embedder-Policy: require-corp',
      `  Content-Security-Policy: ${CONTENT_SECURITY_POLICY_HEADER}`,
      '',
    ]);
  });

  it('index.html has no inline script', () => {
    const html = readFileSync(path.join(root, 'index.html'), 'utf8');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\bsrc=/);
      expect(body.trim()).toBe('');
    }
  });
});
