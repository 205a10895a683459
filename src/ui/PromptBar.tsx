import { useEffect, type KeyboardEvent } from 'react';
import { isRunning } from '../app/runSlice';
import { useApp } from './storeContext';

export function PromptBar() {
  const prompt = useApp((s) => s.prompt);
  const setPrompt = useApp((s) => s.setPrompt);
  const generate = useApp((s) => s.generate);
  const cancel = useApp((s) => s.cancel);
  const running = useApp(isRunning);
  const ready = useApp((s) => s.modelStatus === 'ready');
  const example = useApp((s) => s.modelInfo?.examples[0]);

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter generates, Shift+Enter keeps a line break, IME composition is left alone.
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      void generate();
    }
  };

  // Escape cancels a run wherever the focus is (the Cancel button's tooltip says so), unless
  // something on the page used the key for itself first.
  useEffect(() => {
    if (!running) return;
    const onEscape = (event: globalThis.KeyboardEvent) => {
      if (event.key !== 'Escape' || event.defaultPrevented || event.isComposing) return;
      event.preventDefault();
      void cancel();
    };
    window.addEventListener('keydown', onEscape);
    return () => window.removeEventListener('keydown', onEscape);
  }, [running, cancel]);

  return (
    <form
      className="prompt-bar"
      onSubmit={(event) => {
        event.preventDefault();
        void generate();
      }}
    >
      <label htmlFor="prompt" className="visually-hidden">
        Prompt
      </label>
      <textarea
        id="prompt"
        rows={2}
        value={prompt}
        placeholder={example ? `Describe an image, e.g. “${example}”` : 'Describe an image'}
        onChange={(event) => setPrompt(event.target.value)}
        onKeyDown={onKeyDown}
        aria-describedby="prompt-keys"
        spellCheck={false}
        autoFocus
      />
      <div className="prompt-actions">
        <button type="submit" className="primary" disabled={!ready}>
          Generate
        </button>
        <button type="button" onClick={() => void cancel()} disabled={!running} title="Stop the run (Esc)">
          Cancel
        </button>
      </div>
      <p id="prompt-keys" className="visually-hidden">
        Enter generates, Shift+Enter adds a line, Escape cancels a run.
      </p>
      <PromptHints />
    </form>
  );
}

/** Unknown words the hint marks; a prompt may hold thousands, the others are counted. */
const UNKNOWN_SHOWN = 12;

function PromptHints() {
  const analysis = useApp((s) => s.analysis);
  const examples = useApp((s) => s.modelInfo?.examples);
  const setPrompt = useApp((s) => s.setPrompt);
  const generate = useApp((s) => s.generate);
  const ready = useApp((s) => s.modelStatus === 'ready');
  const unknown = analysis?.unknown ?? [];

  return (
    <div className="prompt-hints">
      {unknown.length > 0 && (
        <p className="hint warn" id="unknown-words">
          Unknown to this model: {unknown.slice(0, UNKNOWN_SHOWN).map((w) => <mark key={w}>{w}</mark>)}
          {unknown.length > UNKNOWN_SHOWN && ` and ${unknown.length - UNKNOWN_SHOWN} more`}. These words are ignored.
        </p>
      )}
      {analysis?.truncated && (
        <p className="hint warn">The prompt is longer than the model reads; the end will be cut off.</p>
      )}
      {examples && examples.length > 0 && (
        <div className="examples" role="group" aria-label="Example prompts">
          <span className="examples-label">Try</span>
          {examples.map((text) => (
            <button
              key={text}
              type="button"
              className="chip"
              disabled={!ready}
              onClick={() => {
                setPrompt(text);
                void generate();
              }}
            >
              {text}
            </button>
          ))}
        </div>
      )}
    </div>
  );
}
