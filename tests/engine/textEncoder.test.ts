import { describe, expect, it } from 'vitest';
import type { TextEncoderSpec } from '../../src/engine/manifest';
import { PromptTokenizer, quotePrompt, textEncoderInputs, tokenizePrompt } from '../../src/engine/textEncoder';

const WORDS = ['[PAD]', '[UNK]', 'a', 'red', 'circle', 'on', 'blue', 'background'];

/** A word-level tokenizer.json like the exporter writes (Lowercase + Whitespace). */
function tokenizerJson(withUnkInModel = true) {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: WORDS.slice(0, 2).map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: Object.fromEntries(WORDS.map((w, i) => [w, i])), ...(withUnkInModel ? { unk_token: '[UNK]' } : {}) },
  };
}

const spec: TextEncoderSpec = { contextTokens: 5, contextDim: 4, prefixIds: [], padId: 0, unkId: 1, lowercase: true };

describe('prompt tokenizer', () => {
  it('maps words to ids, lowercasing, and lists the vocabulary without special tokens', () => {
    const tokenizer = new PromptTokenizer(tokenizerJson(), spec);
    const t = tokenizePrompt(tokenizer, 'A RED circle');
    expect(t.ids).toEqual([2, 3, 4]);
    expect(t.unknown).toEqual([]);
    expect(t.warnings).toEqual([]);
    expect(tokenizer.vocabulary()).toEqual(WORDS.slice(2));
  });

  it('maps unknown words to the unknown token and names them', () => {
    for (const json of [tokenizerJson(true), tokenizerJson(false)]) {
      const tokenizer = new PromptTokenizer(json, spec);
      const t = tokenizePrompt(tokenizer, 'a zebra, on blue');
      expect(t.ids).toEqual([2, 1, 1, 5, 6]);
      expect(t.unknown).toEqual(['zebra', ',']);
      expect(t.warnings[0]).toMatch(/zebra/);
      expect(tokenizer.analyze('a zebra on blue')).toEqual({ tokens: ['a', 'zebra', 'on', 'blue'], unknown: ['zebra'], truncated: false });
    }
  });

  it('cuts a prompt longer than the text window and warns, never fails', () => {
    const tokenizer = new PromptTokenizer(tokenizerJson(), spec);
    const long = 'a red circle on a blue background '.repeat(20);
    const t = tokenizePrompt(tokenizer, long);
    expect(t.ids).toEqual([2, 3, 4, 5, 2]);
    expect(t.truncated).toBe(true);
    expect(t.warnings.join(' ')).toMatch(/140 tokens; the model reads the first 5/);
    expect(tokenizer.analyze(long).truncated).toBe(true);
  });

  it('says where a long prompt was cut and how much, without repeating the cut text, in the warning and in summaries', () => {
    const tokenizer = new PromptTokenizer(tokenizerJson(), spec);
    const t = tokenizePrompt(tokenizer, 'red circle '.repeat(4000));
    expect(t.warnings).toEqual(['The prompt has 8000 tokens; the model reads the first 5, up to "red circle red circle red", and the other 7995 tokens were cut.']);
    // Summaries quote a long prompt by the same rule; a prompt the model reads whole, in full.
    const analysis = tokenizer.analyze('red circle '.repeat(4000));
    expect(analysis.cut).toEqual({ keptEnd: 'red circle red circle red', read: 5, cut: 7995 });
    expect(quotePrompt('red circle '.repeat(4000), analysis)).toBe('"red circle red circle red" (the first 5 of 8000 tokens; the other 7995 tokens were cut)');
    expect(quotePrompt('a red circle', tokenizer.analyze('a red circle'))).toBe('"a red circle"');
    const unknown = Array.from({ length: 30 }, (_, i) => `zz${i}`).join(' ');
    const names = tokenizePrompt(tokenizer, `a ${unknown}`).warnings[0];
    expect(names).toMatch(/zz0, zz1, .*zz11 and 18 more\.$/);
    expect(names).not.toMatch(/zz12/);
  });

  it('rejects an empty prompt as bad input', () => {
    const tokenizer = new PromptTokenizer(tokenizerJson(), spec);
    for (const prompt of ['', '   ', '\n\t']) {
      expect(() => tokenizePrompt(tokenizer, prompt)).toThrow(expect.objectContaining({ code: 'bad-input', message: expect.stringMatching(/prompt is empty/) }));
    }
  });

  it('builds right-padded ids and masks after the prefix', () => {
    const { inputIds, mask, length } = textEncoderInputs({ ...spec, prefixIds: [7, 6], padId: 0 }, [2, 3], 1);
    expect(length).toBe(7);
    expect(Array.from(inputIds)).toEqual([7, 6, 2, 3, 0, 0, 0]);
    expect(Array.from(mask)).toEqual([1, 1, 1, 1, 0, 0, 0]);
  });
});
