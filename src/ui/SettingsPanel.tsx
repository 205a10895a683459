import { useMemo, useRef, type ReactNode } from 'react';
import { startImagePreview } from '../app/runSlice';
import { describeTopK, imageFromScaleRange, MAX_IMAGES, MAX_SEED, scaleFromRange, SETTING_RANGES } from '../app/settingsSlice';
import { readImageFile } from './imageFile';
import { PixelCanvas } from './PixelCanvas';
import { useApp } from './storeContext';

function Field({ label, htmlFor, value, hint, children }: { label: string; htmlFor: string; value?: string; hint?: string; children: ReactNode }) {
  return (
    <div className="field">
      <div className="field-head">
        <label htmlFor={htmlFor}>{label}</label>
        {value !== undefined && <span className="field-value">{value}</span>}
      </div>
      {children}
      {hint && <p className="field-hint">{hint}</p>}
    </div>
  );
}

export function SettingsPanel() {
  const settings = useApp((s) => s.settings);
  const seed = useApp((s) => s.seed);
  const randomSeed = useApp((s) => s.randomSeed);
  const lastSeed = useApp((s) => s.lastSeed);
  const count = useApp((s) => s.count);
  const setSetting = useApp((s) => s.setSetting);
  const setSeed = useApp((s) => s.setSeed);
  const setRandomSeed = useApp((s) => s.setRandomSeed);
  const reuseSeed = useApp((s) => s.reuseSeed);
  const setCount = useApp((s) => s.setCount);
  const resetSettings = useApp((s) => s.resetSettings);

  return (
    <section className="panel settings" aria-labelledby="settings-title">
      <div className="panel-head">
        <h2 id="settings-title">Settings</h2>
        <button type="button" className="link" onClick={resetSettings}>
          Model defaults
        </button>
      </div>

      <Field label="Seed" htmlFor="seed">
        <div className="seed-row">
          <input
            id="seed"
            type="number"
            min={0}
            max={MAX_SEED}
            value={seed}
            onChange={(event) => setSeed(Number(event.target.value))}
          />
          <label className="toggle">
            <input type="checkbox" checked={randomSeed} onChange={(event) => setRandomSeed(event.target.checked)} />
            Random
          </label>
          <button type="button" onClick={reuseSeed} disabled={lastSeed === undefined} title="Use the last run's seed again">
            Reuse
          </button>
        </div>
      </Field>

      <Field label="Guidance scale" htmlFor="cfg" value={settings.cfg.toFixed(1)} hint="How closely the image follows the prompt.">
        <input id="cfg" type="range" min={SETTING_RANGES.cfg.min} max={SETTING_RANGES.cfg.max} step={0.5} value={settings.cfg} onChange={(e) => setSetting('cfg', Number(e.target.value))} />
      </Field>

      {typeof settings.topK === 'number' ? (
        <Field label="Top-k" htmlFor="top-k" hint="Sample among the k likeliest tokens; 0 turns it off.">
          <input id="top-k" type="number" min={SETTING_RANGES.topK.min} step={1} value={settings.topK} onChange={(e) => setSetting('topK', Number(e.target.value))} />
        </Field>
      ) : (
        <Field
          label="Top-k"
          htmlFor="top-k"
          value={describeTopK(settings.topK)}
          hint="The model's k per scale (scales counted from 1, as in the progress timeline). Type a number to use one k on every scale."
        >
          <input
            id="top-k"
            type="number"
            min={SETTING_RANGES.topK.min}
            step={1}
            value=""
            placeholder="per scale"
            onChange={(e) => {
              if (e.target.value !== '') setSetting('topK', Number(e.target.value));
            }}
          />
        </Field>
      )}

      <Field label="Guided scales" htmlFor="guided-scales" hint="Guidance on the first N scales only; 0 guides every scale.">
        <input
          id="guided-scales"
          type="number"
          min={SETTING_RANGES.guidedScales.min}
          step={1}
          value={settings.guidedScales}
          onChange={(e) => setSetting('guidedScales', Number(e.target.value))}
        />
      </Field>

      <Field label="Top-p" htmlFor="top-p" value={settings.topP === 0 ? 'off' : settings.topP.toFixed(2)}>
        <input id="top-p" type="range" min={SETTING_RANGES.topP.min} max={SETTING_RANGES.topP.max} step={0.05} value={settings.topP} onChange={(e) => setSetting('topP', Number(e.target.value))} />
      </Field>

      <Field label="Temperature" htmlFor="temperature" value={settings.temperature.toFixed(2)}>
        <input
          id="temperature"
          type="range"
          min={SETTING_RANGES.temperature.min}
          max={SETTING_RANGES.temperature.max}
          step={0.05}
          value={settings.temperature}
          onChange={(e) => setSetting('temperature', Number(e.target.value))}
        />
      </Field>

      <div className="switches">
        <label className="toggle">
          <input type="checkbox" checked={settings.smooth} onChange={(e) => setSetting('smooth', e.target.checked)} />
          Gumbel smoothing
        </label>
        <label className="toggle">
          <input type="checkbox" checked={settings.residual} onChange={(e) => setSetting('residual', e.target.checked)} />
          Residual diffusion
        </label>
      </div>

      <Field label="Images" htmlFor="count" hint="Each image uses the next seed.">
        <input id="count" type="number" min={1} max={MAX_IMAGES} value={count} onChange={(e) => setCount(Number(e.target.value))} />
      </Field>

      <AdvancedPrompts />
      <StartFromImage />
    </section>
  );
}

/**
 * The negative prompt and the detail prompt. Their rules are the prompt's (the engine checks
 * them and warns about cut or unknown words, naming which prompt); the scale range is the engine's.
 */
function AdvancedPrompts() {
  const negativePrompt = useApp((s) => s.negativePrompt);
  const detailPrompt = useApp((s) => s.detailPrompt);
  const detailFrom = useApp((s) => s.detailFrom);
  const scales = useApp((s) => s.modelInfo?.scales.length);
  const setNegativePrompt = useApp((s) => s.setNegativePrompt);
  const setDetailPrompt = useApp((s) => s.setDetailPrompt);
  const setDetailFrom = useApp((s) => s.setDetailFrom);
  const range = scaleFromRange(scales ?? 1);

  return (
    <fieldset className="advanced">
      <legend>Advanced</legend>
      <Field label="Negative prompt" htmlFor="negative-prompt" hint="What guidance steers away from; empty uses the model's empty condition.">
        <textarea id="negative-prompt" rows={2} value={negativePrompt} spellCheck={false} onChange={(e) => setNegativePrompt(e.target.value)} />
      </Field>
      <Field label="Detail prompt" htmlFor="detail-prompt" hint="Draws the finer scales, from the scale below on; the prompt draws the ones before.">
        <textarea id="detail-prompt" rows={2} value={detailPrompt} spellCheck={false} onChange={(e) => setDetailPrompt(e.target.value)} />
      </Field>
      <Field label="Detail from scale" htmlFor="detail-from" hint={scales ? `1 to ${scales}, as "Scale k of ${scales}".` : undefined}>
        <input
          id="detail-from"
          type="number"
          min={range.min}
          max={scales ? range.max : undefined}
          step={1}
          value={detailFrom}
          disabled={detailPrompt.trim() === ''}
          onChange={(e) => setDetailFrom(Number(e.target.value))}
        />
      </Field>
    </fieldset>
  );
}

/** Reads a picked or dropped file into the store, or says why it cannot be used. */
export function useStartImageFile(): (file: File | undefined) => Promise<void> {
  const setInitImage = useApp((s) => s.setInitImage);
  const rejectInitImage = useApp((s) => s.rejectInitImage);
  return async (file) => {
    if (!file) return;
    try {
      setInitImage(await readImageFile(file));
    } catch (error) {
      rejectInitImage((error as Error).message);
    }
  };
}

/**
 * Image to image: the picked image as the model will see it (the engine's centre-crop and resize)
 * and the first scale drawn under the prompt. Drop an image on the canvas to the same effect.
 */
function StartFromImage() {
  const start = useApp((s) => s.initImage);
  const error = useApp((s) => s.initImageError);
  const fromScale = useApp((s) => s.initFromScale);
  const info = useApp((s) => s.modelInfo);
  const setInitFromScale = useApp((s) => s.setInitFromScale);
  const clearInitImage = useApp((s) => s.clearInitImage);
  const takeFile = useStartImageFile();
  const picker = useRef<HTMLInputElement>(null);
  const size = info?.imageSize ?? 256;
  const scales = info?.scales.length;
  const range = imageFromScaleRange(scales ?? 1);
  const preview = useMemo(() => (start ? startImagePreview(start, size) : undefined), [start, size]);

  return (
    <fieldset className="advanced start-image">
      <legend>Start from an image</legend>
      <div className="seed-row">
        <button type="button" aria-label="Start from an image" onClick={() => picker.current?.click()}>
          Use an image…
        </button>
        <input
          ref={picker}
          type="file"
          accept="image/*"
          hidden
          data-testid="start-image-file"
          onChange={(e) => {
            void takeFile(e.target.files?.[0]);
            e.target.value = '';
          }}
        />
        {start && (
          <button type="button" onClick={clearInitImage}>
            Clear image
          </button>
        )}
      </div>
      {error && (
        <p className="field-hint warn" role="alert">
          {error}
        </p>
      )}
      {start && preview && (
        <>
          <PixelCanvas pixels={preview} size={size} label={`Start image ${start.name}`} className="start-image-preview" />
          <p className="field-hint">
            {start.name} ({start.image.width}×{start.image.height}), centre-cropped and resized to {size} px.
            {info && !info.imageToImage && ' This model has no encoder, so it cannot start from an image.'}
          </p>
          <Field
            label="From scale"
            htmlFor="from-scale"
            hint={scales ? `Scales before it come from the image; ${scales + 1} keeps them all.` : undefined}
          >
            <input
              id="from-scale"
              type="number"
              min={range.min}
              max={scales ? range.max : undefined}
              step={1}
              value={fromScale}
              onChange={(e) => setInitFromScale(Number(e.target.value))}
            />
          </Field>
        </>
      )}
    </fieldset>
  );
}
