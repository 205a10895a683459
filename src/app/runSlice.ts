// One Generate: the prompt check, the seeds, the engine events turned into status, progress and
// timeline frames, and the finished images handed to the gallery.
import { initImagePixels, seedAfter, type GenerateEvent, type GenerateRequest, type GenerateResult, type ImagePixels, type ModelInfo } from '../engine/index';
import type { AppFailure } from '../../workers/protocol';
import { IDLE_PROGRESS, type RunProgress } from './runStatus';
import { clampImageFromScale, clampScaleFrom, clampSeed } from './settingsSlice';
import type { AppDeps, AppState, Frame, RunSlice, Slice, StartImage, VarySource } from './storeTypes';

const ACTIVE: ReadonlySet<RunProgress['phase']> = new Set(['starting', 'scales', 'refining']);

export function isRunning(state: Pick<AppState, 'run'>): boolean {
  return ACTIVE.has(state.run.phase);
}

function scaleLabel(info: ModelInfo | undefined, index: number): string {
  const side = info?.scales[index];
  return side ? `${side}×${side}` : `Scale ${index + 1}`;
}

/** The start image as the model will see it (the engine's centre-crop and resize), to show. */
export function startImagePreview(start: StartImage, size: number): ImagePixels {
  return initImagePixels(start.image, size);
}

/** Applies one engine event to the run state; returns the fields that change. */
export function applyEvent(
  state: Pick<AppState, 'run' | 'frames' | 'warnings' | 'modelInfo' | 'firstPreviewMs'>,
  event: GenerateEvent,
  elapsedMs: number,
): Partial<AppState> {
  switch (event.type) {
    case 'start':
      return {
        // The status names a scale only once its preview exists, so 'start' keeps 'starting'.
        run: { ...state.run, scaleCount: event.scales, scalesDone: 0 },
        warnings: [...new Set([...state.warnings, ...event.warnings])],
      };
    case 'scale': {
      const frames: Frame[] = event.preview
        ? [...state.frames, { label: scaleLabel(state.modelInfo, event.index), pixels: event.preview, final: false }]
        : state.frames;
      return {
        run: { ...state.run, phase: 'scales', scaleCount: event.count, scalesDone: event.index + 1 },
        frames,
        firstPreviewMs: state.firstPreviewMs ?? (event.preview ? elapsedMs : undefined),
      };
    }
    case 'diffusion':
      return { run: { ...state.run, phase: 'refining', stepsDone: event.step, stepCount: event.steps } };
    case 'decode':
      return { run: { ...state.run, decoded: true } };
  }
}

/**
 * The request the page's fields make, without its seed: the negative and detail prompts only
 * when typed (trimmed, as the prompt is), the detail scale inside the model's scales.
 */
export function requestFields(state: Pick<AppState, 'prompt' | 'negativePrompt' | 'detailPrompt' | 'detailFrom' | 'settings'>, scales: number): VarySource['request'] {
  const negativePrompt = state.negativePrompt.trim();
  const detailPrompt = state.detailPrompt.trim();
  return {
    prompt: state.prompt.trim(),
    settings: { ...state.settings },
    previews: true,
    ...(negativePrompt ? { negativePrompt } : {}),
    ...(detailPrompt ? { detailPrompt, detailFrom: clampScaleFrom(state.detailFrom, scales) } : {}),
  };
}

export function createRunSlice(deps: AppDeps): Slice<RunSlice> {
  // Each Generate (and each Cancel) starts a new run id; results of older runs are dropped.
  let runId = 0;
  let analyzeId = 0;
  let analyzeTimer: ReturnType<typeof setTimeout> | undefined;

  return (set, get) => {
    function fail(failure: AppFailure): void {
      set({ runError: failure });
    }

    async function paint(id: number, request: GenerateRequest, started: number): Promise<GenerateResult | undefined> {
      // Events travel on their own message port, so the result may overtake the last of them;
      // once the result is in, late events must not pull the status back to "Refining".
      let settled = false;
      try {
        const result = await deps.client.generate(
          request,
          (event) => {
            if (id === runId && !settled) set(applyEvent(get(), event, deps.now() - started));
          },
        );
        settled = true;
        return id === runId ? result : undefined;
      } catch (error) {
        settled = true;
        if (id !== runId) return undefined;
        const failure = error as AppFailure;
        if (failure.code === 'cancelled') {
          set({ run: { ...get().run, phase: 'cancelled' } });
        } else if (failure.code === 'device-lost') {
          // Not the end of the session: a fresh worker loads the model again (WebGPU, else WASM).
          set({
            run: { ...get().run, phase: 'error' },
            runError: { code: failure.code, message: `${failure.message} Loading it again; Generate works once it is ready.` },
          });
          void get().recoverFromDeviceLoss(failure);
        } else {
          set({ run: { ...get().run, phase: 'error' }, runError: failure });
        }
        return undefined;
      }
    }

    /**
     * Runs `requests` one after the other as one Generate: each image's frames, then the final
     * image kept in the gallery and offered for Vary; "Done" after the last.
     */
    async function paintAll(id: number, requests: GenerateRequest[], started: number): Promise<void> {
      for (const [index, request] of requests.entries()) {
        if (index > 0) {
          set({
            frames: [],
            run: { ...get().run, phase: 'starting', imageIndex: index, scalesDone: 0, stepsDone: 0, decoded: false },
          });
        }
        const result = await paint(id, request, started);
        if (!result) return;
        const elapsedMs = deps.now() - started;
        // A varied image keeps its token maps (an init image's among them), not the image itself.
        const { seed: _seed, vary: _vary, initImage: _image, fromScale: _from, ...fields } = request;
        set({
          frames: [...get().frames, { label: 'Final', pixels: result.image, final: true }],
          warnings: [...new Set([...get().warnings, ...result.warnings])],
          varySource: { model: result.model, request: fields, tokens: result.tokens },
        });
        // "Done" only once the image is stored: a reload right at "Done in" must find it in
        // the gallery. (A failed write is reported by the gallery and the run still ends.)
        await get().keep(result, elapsedMs);
        if (id !== runId) return;
        if (index === requests.length - 1) set({ run: { ...get().run, phase: 'done', decoded: true, elapsedMs } });
      }
    }

    /** Clears the last run's frames and status for a new one of `imageCount` images. */
    function startRun(info: ModelInfo, seed: number, refine: boolean, imageCount: number): void {
      set({
        lastSeed: seed,
        runError: undefined,
        warnings: [],
        frames: [],
        selectedFrame: null,
        firstPreviewMs: undefined,
        run: { ...IDLE_PROGRESS, phase: 'starting', scaleCount: info.scales.length, refine, imageCount },
      });
    }

    return {
      prompt: '',
      negativePrompt: '',
      detailPrompt: '',
      detailFrom: 2,
      initFromScale: 4,
      run: IDLE_PROGRESS,
      frames: [],
      selectedFrame: null,
      warnings: [],

      setPrompt(prompt) {
        set({ prompt });
        clearTimeout(analyzeTimer);
        analyzeTimer = setTimeout(() => void get().analyzePrompt(), deps.analyzeDelayMs ?? 250);
      },

      setNegativePrompt(text) {
        set({ negativePrompt: text });
      },

      setDetailPrompt(text) {
        set({ detailPrompt: text });
      },

      setInitImage(image) {
        set({ initImage: image, initImageError: undefined });
      },

      rejectInitImage(message) {
        set({ initImageError: message });
      },

      clearInitImage() {
        set({ initImage: undefined, initImageError: undefined });
      },

      setInitFromScale(scale) {
        set({ initFromScale: clampImageFromScale(scale, get().modelInfo?.scales.length ?? Number.MAX_SAFE_INTEGER - 1) });
      },

      setDetailFrom(scale) {
        set({ detailFrom: clampScaleFrom(scale, get().modelInfo?.scales.length ?? Number.MAX_SAFE_INTEGER) });
      },

      async analyzePrompt() {
        const id = ++analyzeId;
        const { prompt, modelStatus } = get();
        if (modelStatus !== 'ready' || prompt.trim() === '') {
          set({ analysis: undefined });
          return;
        }
        try {
          const analysis = await deps.client.analyzePrompt(prompt);
          if (id === analyzeId) set({ analysis });
        } catch {
          // Pointing out unknown words is a help, not a requirement: stay quiet on failure.
          if (id === analyzeId) set({ analysis: undefined });
        }
      },

      async generate() {
        const state = get();
        if (state.modelStatus !== 'ready' || !state.modelInfo) {
          fail({ code: 'bad-input', message: 'The model is not loaded yet. Wait for it to finish loading.' });
          return;
        }
        if (state.prompt.trim() === '') {
          fail({ code: 'bad-input', message: 'Type a prompt first: describe the image you want.' });
          return;
        }
        const id = ++runId;
        const seed = state.randomSeed ? clampSeed(deps.randomSeed()) : state.seed;
        const started = deps.now();
        set({ seed });
        startRun(state.modelInfo, seed, state.settings.residual, state.count);
        const scales = state.modelInfo.scales.length;
        const fields = {
          ...requestFields(state, scales),
          ...(state.initImage ? { initImage: state.initImage.image, fromScale: clampImageFromScale(state.initFromScale, scales) } : {}),
        };
        // Seeds of a multi-image run follow each other and wrap inside the valid range.
        const requests = Array.from({ length: state.count }, (_, index) => ({ ...fields, seed: seedAfter(seed, index) }));
        await paintAll(id, requests, started);
      },

      async vary(fromScale) {
        const state = get();
        const source = state.varySource;
        if (state.modelStatus !== 'ready' || !state.modelInfo) {
          fail({ code: 'bad-input', message: 'The model is not loaded yet. Wait for it to finish loading.' });
          return;
        }
        if (!source || source.model !== state.modelInfo.name) {
          fail({ code: 'bad-input', message: 'There is no image of this model to vary yet: generate one first.' });
          return;
        }
        const id = ++runId;
        // A vary always draws a new seed: the kept scales keep the ones that drew them.
        const seed = clampSeed(deps.randomSeed());
        const started = deps.now();
        startRun(state.modelInfo, seed, source.request.settings?.residual ?? state.settings.residual, 1);
        await paintAll(id, [{ ...source.request, seed, vary: { fromScale, tokens: source.tokens } }], started);
      },

      async cancel() {
        if (!isRunning(get())) return;
        runId++;
        set({ run: { ...get().run, phase: 'cancelled' } });
        try {
          await deps.client.cancel();
        } catch (error) {
          fail(error as AppFailure);
        }
      },

      selectFrame(index) {
        const { frames } = get();
        if (index === null || (index >= 0 && index < frames.length)) set({ selectedFrame: index });
      },
    };
  };
}
