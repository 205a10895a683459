// @vitest-environment jsdom
import { act, cleanup, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderApp } from './renderApp';
import { installCanvasStub, lastDrawn } from './canvasStub';
import { createHarness, loaded } from '../app/storeHarness';
import { FAKE_DEFAULTS, fakeInfo } from '../workers/fakeEngine';

beforeAll(installCanvasStub);
afterEach(cleanup);

/** Every distinct text the status region showed, in order. */
function recordStatus(): string[] {
  const status = screen.getByRole('status');
  const seen = [status.textContent ?? ''];
  const observer = new MutationObserver(() => {
    const text = status.textContent ?? '';
    if (seen[seen.length - 1] !== text) seen.push(text);
  });
  observer.observe(status, { childList: true, characterData: true, subtree: true });
  return seen;
}

describe('the app page', () => {
  it('shows the backend badge with its reason once the model is loaded', async () => {
    const harness = await loaded();
    renderApp(harness);
    expect(screen.getByText('WASM')).toBeTruthy();
    expect(screen.getByText('WebGPU is not available in tests.')).toBeTruthy();
    expect(screen.getByRole('status').textContent).toBe('Ready');
  });

  it('Enter in the prompt paints scale by scale, then keeps the image in the gallery', async () => {
    const harness = await loaded({ stepMs: 2 });
    renderApp(harness);
    const canvas = screen.getByRole('img', { name: 'Generated image' });
    const statuses = recordStatus();
    // What the canvas held whenever the status named a scale.
    const drawnAtScale = new Map<string, string>();
    const observer = new MutationObserver(() => {
      const text = screen.getByRole('status').textContent ?? '';
      const d = lastDrawn(canvas);
      if (text.startsWith('Scale') && d) drawnAtScale.set(text, `${d.width}:${d.data.slice(0, 4).join(',')}`);
    });
    observer.observe(screen.getByRole('status'), { childList: true, characterData: true, subtree: true });

    const prompt = screen.getByRole('textbox', { name: 'Prompt' });
    fireEvent.change(prompt, { target: { value: 'a red circle' } });
    fireEvent.keyDown(prompt, { key: 'Enter' });

    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done in \d+\.\d s$/));
    observer.disconnect();
    expect(statuses.filter((s) => s.startsWith('Scale'))).toEqual(['Scale 1 of 3', 'Scale 2 of 3', 'Scale 3 of 3']);
    expect(statuses).toContain('Refining');
    // The canvas holds a different picture at each scale: 1×1, 2×2, 4×4 previews.
    expect([...drawnAtScale.keys()]).toEqual(['Scale 1 of 3', 'Scale 2 of 3', 'Scale 3 of 3']);
    expect([...drawnAtScale.values()].map((d) => d.split(':')[0])).toEqual(['1', '2', '4']);
    expect(new Set(drawnAtScale.values()).size).toBe(3);
    expect(lastDrawn(canvas)?.width).toBe(8);
    expect(screen.getByRole('progressbar', { name: 'Generation progress' }).getAttribute('aria-valuenow')).toBe('100');

    const gallery = screen.getByRole('list', { name: 'Gallery' });
    expect(within(gallery).getAllByRole('listitem')).toHaveLength(1);
    expect(within(gallery).getByText('a red circle')).toBeTruthy();
    expect(within(gallery).getByText(/Seed 1001/)).toBeTruthy();
  });

  it('the timeline shows an earlier scale when picked', async () => {
    const harness = await loaded();
    renderApp(harness);
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    const canvas = screen.getByRole('img', { name: 'Generated image' });
    fireEvent.click(screen.getByRole('button', { name: 'Show scale 2 (2×2)' }));
    expect(lastDrawn(canvas)?.width).toBe(2);
    fireEvent.change(screen.getByRole('slider', { name: 'Timeline position' }), { target: { value: '0' } });
    expect(lastDrawn(canvas)?.width).toBe(1);
    fireEvent.click(screen.getByRole('button', { name: 'Show the final image' }));
    expect(lastDrawn(canvas)?.width).toBe(8);
  });

  it('points out unknown words and runs an example in one click', async () => {
    const harness = await loaded();
    renderApp(harness);
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a purple circle' } });
    await waitFor(() => expect(screen.getByText('purple').tagName).toBe('MARK'));
    const examples = screen.getByRole('group', { name: 'Example prompts' });
    fireEvent.click(within(examples).getByRole('button', { name: 'a blue square on green' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/), { timeout: 3000 });
    expect(harness.fake.requests[0].prompt).toBe('a blue square on green');
  });

  it('marks twelve unknown words and counts the others, however long the prompt', async () => {
    const harness = await loaded();
    renderApp(harness);
    const words = Array.from({ length: 500 }, (_, i) => `zz${i}`).join(' ');
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: `a ${words}` } });
    await waitFor(() => expect(screen.getByText('zz0').tagName).toBe('MARK'));
    const hint = document.getElementById('unknown-words')!;
    expect(hint.querySelectorAll('mark')).toHaveLength(12);
    expect(hint.textContent).toMatch(/zz11 and 488 more\. These words are ignored\.$/);
  });

  it('Escape (like Cancel) stops the run and a new one can start at once', async () => {
    const harness = await loaded({ stepMs: 20 });
    renderApp(harness);
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Scale/));
    fireEvent.keyDown(screen.getByRole('textbox', { name: 'Prompt' }), { key: 'Escape' });
    expect(screen.getByRole('status').textContent).toBe('Cancelled');
    expect((screen.getByRole('button', { name: 'Cancel' }) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/), { timeout: 3000 });
    expect(within(screen.getByRole('list', { name: 'Gallery' })).getAllByRole('listitem')).toHaveLength(1);
  });

  it('Escape cancels a run wherever the focus is, not only in the prompt box', async () => {
    const harness = await loaded({ stepMs: 20 });
    renderApp(harness);
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    const generateButton = screen.getByRole('button', { name: 'Generate' });
    fireEvent.click(generateButton);
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Scale/));
    generateButton.focus();
    fireEvent.keyDown(generateButton, { key: 'Escape' });
    expect(screen.getByRole('status').textContent).toBe('Cancelled');
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Scale/));
    fireEvent.keyDown(document.body, { key: 'Escape' });
    expect(screen.getByRole('status').textContent).toBe('Cancelled');
  });

  it('settings reach the engine', async () => {
    const harness = await loaded();
    renderApp(harness);
    fireEvent.click(screen.getByRole('checkbox', { name: 'Residual diffusion' }));
    fireEvent.click(screen.getByRole('checkbox', { name: 'Gumbel smoothing' }));
    fireEvent.change(screen.getByRole('spinbutton', { name: 'Top-k' }), { target: { value: '12' } });
    fireEvent.change(screen.getByRole('slider', { name: 'Guidance scale' }), { target: { value: '6.5' } });
    fireEvent.change(screen.getByRole('spinbutton', { name: 'Guided scales' }), { target: { value: '4' } });
    fireEvent.change(screen.getByRole('spinbutton', { name: 'Seed' }), { target: { value: '77' } });
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    expect(harness.fake.requests[0]).toMatchObject({ seed: 77, settings: { residual: false, smooth: true, topK: 12, cfg: 6.5, guidedScales: 4 } });
    expect((screen.getByRole('checkbox', { name: 'Random' }) as HTMLInputElement).checked).toBe(false);
  });

  it("shows the package's top-k schedule with 1-based scales, sends and re-runs it, and a number overrides it", async () => {
    const schedule = { values: [600, 300], from: [0, 7] };
    const harness = await loaded({ info: fakeInfo({ defaults: { ...FAKE_DEFAULTS, topK: schedule } }) });
    renderApp(harness);
    const topK = screen.getByRole('spinbutton', { name: 'Top-k' }) as HTMLInputElement;
    expect(topK.value).toBe('');
    expect(screen.getByText('600, 300 from scale 8')).toBeTruthy();
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    expect(harness.fake.requests[0].settings?.topK).toEqual(schedule);
    const gallery = screen.getByRole('list', { name: 'Gallery' });
    expect(within(gallery).getByText(/top-k 600, 300 from scale 8/)).toBeTruthy();

    fireEvent.change(topK, { target: { value: '40' } });
    expect((screen.getByRole('spinbutton', { name: 'Top-k' }) as HTMLInputElement).value).toBe('40');
    expect(screen.queryByText('600, 300 from scale 8')).toBeNull();
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(harness.fake.requests).toHaveLength(2));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    expect(harness.fake.requests[1].settings?.topK).toBe(40);

    // The first image's re-run brings its schedule back; "Model defaults" does too.
    const rerun = screen.getAllByRole('button', { name: 'Re-run “a red circle”' });
    fireEvent.click(rerun[rerun.length - 1]);
    await waitFor(() => expect(harness.fake.requests).toHaveLength(3));
    expect(harness.fake.requests[2].settings?.topK).toEqual(schedule);
    fireEvent.change(screen.getByRole('spinbutton', { name: 'Top-k' }), { target: { value: '40' } });
    fireEvent.click(screen.getByRole('button', { name: 'Model defaults' }));
    expect(screen.getByText('600, 300 from scale 8')).toBeTruthy();
  });

  it('while loading on WASM, lists the warm-up as skipped, with its reason, and the bar is full after the upload', async () => {
    let release!: () => void;
    const harness = createHarness({
      loadProgress: [
        { phase: 'manifest', file: 'manifest.json', loaded: 1, total: 1 },
        { phase: 'warmup', loaded: 0, total: 0, skipped: 'no shaders to compile on WASM' },
        { phase: 'download', file: 'decoder.onnx', loaded: 2048, total: 2048 },
        { phase: 'upload', file: 'preview.onnx', loaded: 8, total: 8 },
      ],
      holdLoad: new Promise<void>((r) => (release = r)),
    });
    renderApp(harness);
    let pending!: Promise<void>;
    act(() => {
      pending = harness.store.getState().loadModel({ kind: 'url', url: 'http://x/' }, 'x');
    });
    await waitFor(() => expect(screen.getByRole('status').textContent).toBe('Loading model (upload to gpu)'));
    const items = [...document.querySelectorAll('.load-phases li')];
    expect(items.map((li) => li.querySelector('.phase-name')!.textContent)).toEqual(['Manifest', 'Download', 'Upload to GPU', 'Warm-up']);
    const warmup = items[3];
    expect(warmup.className).toContain('phase-skipped');
    expect(warmup.querySelector('.phase-detail')!.textContent).toBe('skipped: no shaders to compile on WASM');
    expect(items[2].className).toContain('phase-active');
    expect(screen.getByRole('progressbar', { name: 'Model loading' }).getAttribute('aria-valuenow')).toBe('100');
    await act(async () => {
      release();
      await pending;
    });
    expect(document.querySelector('.load-phases')).toBeNull();
  });

  it('says in words why the model did not load', async () => {
    const harness = createHarness({ failLoad: { code: 'fetch-failed', message: 'decoder.onnx: the server answered 404 Not Found' } });
    renderApp(harness);
    await act(() => harness.store.getState().loadModel({ kind: 'url', url: 'http://x/' }, 'x'));
    const alert = screen.getByRole('alert');
    expect(alert.textContent).toContain('The model could not be loaded');
    expect(alert.textContent).toContain('decoder.onnx: the server answered 404 Not Found');
    expect((screen.getByRole('button', { name: 'Generate' }) as HTMLButtonElement).disabled).toBe(true);
  });

  it('gallery entries can be re-run and deleted', async () => {
    const harness = await loaded();
    renderApp(harness);
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    fireEvent.click(screen.getByRole('button', { name: 'Re-run “a red circle”' }));
    await waitFor(() => expect(within(screen.getByRole('list', { name: 'Gallery' })).getAllByRole('listitem')).toHaveLength(2));
    expect(harness.fake.requests[1].seed).toBe(harness.fake.requests[0].seed);
    const deletes = screen.getAllByRole('button', { name: 'Delete “a red circle”' });
    fireEvent.click(deletes[0]);
    await waitFor(() => expect(within(screen.getByRole('list', { name: 'Gallery' })).getAllByRole('listitem')).toHaveLength(1));
  });

  it('the negative prompt, the detail prompt and its scale (held inside the model’s scales) reach the engine', async () => {
    const harness = await loaded();
    renderApp(harness);
    const detailFrom = screen.getByRole('spinbutton', { name: 'Detail from scale' }) as HTMLInputElement;
    expect(detailFrom.disabled).toBe(true);
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.change(screen.getByRole('textbox', { name: 'Negative prompt' }), { target: { value: ' a green square ' } });
    fireEvent.change(screen.getByRole('textbox', { name: 'Detail prompt' }), { target: { value: 'a blue circle' } });
    expect(detailFrom.disabled).toBe(false);
    expect(detailFrom.max).toBe('3');
    fireEvent.change(detailFrom, { target: { value: '9' } });
    expect(detailFrom.value).toBe('3');
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    expect(harness.fake.requests[0]).toMatchObject({ prompt: 'a red circle', negativePrompt: 'a green square', detailPrompt: 'a blue circle', detailFrom: 3 });
    expect(harness.store.getState().gallery[0]).toMatchObject({ negativePrompt: 'a green square', detailPrompt: 'a blue circle', detailFrom: 3 });

    // Emptied fields send nothing: the model's empty condition, one prompt for every scale.
    fireEvent.change(screen.getByRole('textbox', { name: 'Negative prompt' }), { target: { value: '  ' } });
    fireEvent.change(screen.getByRole('textbox', { name: 'Detail prompt' }), { target: { value: '' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(harness.fake.requests).toHaveLength(2));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    for (const key of ['negativePrompt', 'detailPrompt', 'detailFrom']) expect(harness.fake.requests[1]).not.toHaveProperty(key);
  });

  it('"Vary from scale k" starts a run with a new seed that keeps the finished image’s first k − 1 token maps', async () => {
    const harness = await loaded();
    renderApp(harness);
    expect(screen.queryByRole('button', { name: /^Vary from scale/ })).toBeNull();
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.change(screen.getByRole('textbox', { name: 'Negative prompt' }), { target: { value: 'a green square' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    expect(screen.getAllByRole('button', { name: /^Vary from scale \d$/ }).map((b) => b.getAttribute('aria-label'))).toEqual([
      'Vary from scale 1',
      'Vary from scale 2',
      'Vary from scale 3',
    ]);
    const source = harness.store.getState().gallery[0];
    // What the fields say now does not matter: a vary re-runs the image it varies.
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a blue square' } });
    fireEvent.click(screen.getByRole('button', { name: 'Vary from scale 2' }));
    expect(screen.queryByRole('button', { name: /^Vary from scale/ })).toBeNull();
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    const [first, varied] = harness.fake.requests;
    expect(varied).toMatchObject({ prompt: 'a red circle', negativePrompt: 'a green square', settings: first.settings, vary: { fromScale: 2, tokens: source.tokens } });
    expect(varied.seed).not.toBe(first.seed);
    const entry = harness.store.getState().gallery[0];
    expect(entry).toMatchObject({ variedFrom: 2, seed: varied.seed });
    expect(entry.tokens!.maps[0]).toEqual(source.tokens!.maps[0]);
    expect(entry.tokens!.seeds).toEqual([first.seed, varied.seed, varied.seed]);
    // The varied image can be varied in turn.
    fireEvent.click(screen.getByRole('button', { name: 'Vary from scale 3' }));
    await waitFor(() => expect(harness.fake.requests).toHaveLength(3));
    expect(harness.fake.requests[2].vary).toMatchObject({ fromScale: 3, tokens: entry.tokens });
  });

  it('a gallery image is varied from a chosen scale with its own prompts and token maps', async () => {
    const harness = await loaded();
    renderApp(harness);
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'a red circle' } });
    fireEvent.change(screen.getByRole('textbox', { name: 'Detail prompt' }), { target: { value: 'a blue square' } });
    fireEvent.click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    const source = harness.store.getState().gallery[0];
    fireEvent.change(screen.getByRole('textbox', { name: 'Prompt' }), { target: { value: 'something else' } });
    fireEvent.change(screen.getByRole('spinbutton', { name: 'Scale to vary “a red circle” from' }), { target: { value: '3' } });
    fireEvent.click(screen.getByRole('button', { name: 'Vary “a red circle” from scale 3' }));
    await waitFor(() => expect(harness.fake.requests).toHaveLength(2));
    await waitFor(() => expect(screen.getByRole('status').textContent).toMatch(/^Done/));
    expect(harness.fake.requests[1]).toMatchObject({ prompt: 'a red circle', detailPrompt: 'a blue square', detailFrom: 2, vary: { fromScale: 3, tokens: source.tokens } });
    expect(harness.fake.requests[1].seed).not.toBe(source.seed);
    expect(within(screen.getByRole('list', { name: 'Gallery' })).getByText(/varied from scale 3/)).toBeTruthy();
  });
});
