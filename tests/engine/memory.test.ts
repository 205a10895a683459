// Memory on big models: the KV cache is gone before the diffusion head runs, the last step
// returns no present_*, and the text encoder can be released after each encoding.
import { describe, expect, it } from 'vitest';
import type { Ort } from '../../src/engine/backend';
import { loadEngine, shouldFreeTextEncoder, TEXT_ENCODER_FREE_BYTES } from '../../src/engine/index';
import { createFsIO } from '../../src/engine/node';
import { parseManifest } from '../../src/engine/manifest';
import type { GenerateEvent } from '../../src/engine/types';
import { FIXTURE, importOrt } from './golden';
import { syntheticPackage } from './manifestFixture';

const PROMPT = 'a red circle on a blue background';

type Tracked = { location: string };

/** An ORT that records session creations, releases and every run's returned tensors. */
async function trackingOrt() {
  const ort = await importOrt('onnxruntime-node');
  const log = { created: 0, released: 0, runs: [] as { feeds: string[]; outputs: Record<string, Tracked> }[] };
  const InferenceSession = {
    create: async (...args: unknown[]) => {
      const session = await (ort.InferenceSession.create as (...a: unknown[]) => Promise<any>)(...args);
      log.created++;
      return {
        inputNames: session.inputNames,
        outputNames: session.outputNames,
        release: () => (log.released++, session.release()),
        run: async (...runArgs: unknown[]) => {
          const outputs = await session.run(...runArgs);
          log.runs.push({ feeds: Object.keys(runArgs[0] as object), outputs });
          return outputs;
        },
      };
    },
  };
  return { ort: { ...ort, InferenceSession } as Ort, log };
}


describe('KV cache lifetime', () => {
  it('returns no present_* on the last scale and frees the cache before the diffusion head', async () => {
    const { ort, log } = await trackingOrt();
    const engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE) });
    try {
      const K = engine.info.scales.length;
      let aliveAtDiffusion: string[] | undefined;
      const onEvent = (event: GenerateEvent) => {
        if (event.type !== 'diffusion' || aliveAtDiffusion) return;
        aliveAtDiffusion = log.runs.flatMap((r) => Object.entries(r.outputs)).filter(([n, t]) => n.startsWith('present_') && t.location !== 'none').map(([n]) => n);
      };
      await engine.generate({ prompt: PROMPT, seed: 2 }, { onEvent });
      expect(aliveAtDiffusion).toEqual([]);
      // One transformer step per scale plus the text step: K runs; only the last lacks present_*.
      const steps = log.runs.filter((r) => r.feeds.includes('rope_cos'));
      expect(steps.length).toBe(K);
      const withCache = steps.filter((r) => Object.keys(r.outputs).some((n) => n.startsWith('present_')));
      expect(withCache.length).toBe(K - 1);
      expect(Object.keys(steps.at(-1)!.outputs)).toEqual(['hidden']);
    } finally {
      await engine.dispose();
    }
  });
});

describe('freeTextEncoderAfterUse', () => {
  it('releases the text encoder after encoding and recreates it for the next request, same images', async () => {
    const reference = await loadEngine(FIXTURE, { ort: await importOrt('onnxruntime-node'), io: createFsIO(FIXTURE) });
    expect(reference.model.freeTextEncoderAfterUse).toBe(false);
    const { ort, log } = await trackingOrt();
    const engine = await loadEngine(FIXTURE, { ort, io: createFsIO(FIXTURE), freeTextEncoderAfterUse: true });
    try {
      const textEncoder = engine.model.sessions.textEncoder;
      expect(engine.model.freeTextEncoderAfterUse).toBe(true);
      expect(log.created).toBe(8);
      const a = await engine.generate({ prompt: PROMPT, seed: 4 });
      expect(textEncoder.loaded).toBe(false);
      expect(log.released).toBe(1);
      const b = await engine.generate({ prompt: 'a blue square', seed: 5 });
      expect(textEncoder.reloads).toBe(1);
      expect(log.created).toBe(9);
      expect(log.released).toBe(2);
      expect(textEncoder.loaded).toBe(false);
      const ra = await reference.generate({ prompt: PROMPT, seed: 4 });
      const rb = await reference.generate({ prompt: 'a blue square', seed: 5 });
      expect(Buffer.from(a.image.data).equals(Buffer.from(ra.image.data))).toBe(true);
      expect(Buffer.from(b.image.data).equals(Buffer.from(rb.image.data))).toBe(true);
    } finally {
      await engine.dispose();
      await reference.dispose();
    }
    // Disposing a suspended session releases nothing twice.
    expect(log.released).toBe(2 + 7);
  });

  it('is on by default only for a large text encoder', () => {
    const { manifest } = syntheticPackage();
    const small = parseManifest(manifest);
    expect(shouldFreeTextEncoder(small, false)).toBe(false);
    expect(shouldFreeTextEncoder(small, false, true)).toBe(true);
    manifest.files.find((f: { path: string }) => f.path === 'textEncoder.onnx').bytes = TEXT_ENCODER_FREE_BYTES + 1;
    const large = parseManifest(manifest);
    expect(shouldFreeTextEncoder(large, false)).toBe(true);
    expect(shouldFreeTextEncoder(large, false, false)).toBe(false);
  });
});
