// The prompt → text features stage: the package's tokenizer.json through a maintained tokenizer
// library, truncation/padding to the text window, the text-encoder graph, and HART's CFG
// context (the prompt's features for conditional rows, zeros for the null condition).
import { Tokenizer } from '@huggingface/tokenizers';
import type { Tensor } from 'onnxruntime-common';
import type { Ort } from './backend';
import { BadInputError, BadPackageError } from './errors';
import type { TextEncoderSpec } from './manifest';
import { floatTensor, int32Tensor, readFloats, type GraphSession } from './session';
import type { PromptAnalysis, PromptCut } from './types';

export interface TokenizedPrompt {
  /** Token ids of the prompt, cut to the text window. */
  ids: number[];
  /** Their strings, as the tokenizer split them. */
  tokens: string[];
  /** Distinct words the vocabulary lacks (they became the unknown token). */
  unknown: string[];
  truncated: boolean;
  warnings: string[];
}

type TokenizerJson = { model?: { type?: string; unk_token?: string; vocab?: unknown }; added_tokens?: { content: string; special?: boolean }[] };

export class PromptTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly specialTokens: Set<string>;
  readonly isWordLevel: boolean;

  constructor(
    json: TokenizerJson,
    private readonly spec: TextEncoderSpec,
    file = 'tokenizer.json',
  ) {
    let unkToken = json.model?.unk_token;
    try {
      if (!unkToken && spec.unkId !== null) unkToken = new Tokenizer(json, {}).id_to_token(spec.unkId);
      // Without unk_token in the config the library returns undefined ids for unknown words.
      this.tokenizer = new Tokenizer(json, unkToken ? { unk_token: unkToken } : {});
    } catch (error) {
      throw new BadPackageError(`is not a tokenizer the engine can load (${(error as Error).message})`, file, { cause: error });
    }
    this.specialTokens = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.content));
    this.isWordLevel = json.model?.type === 'WordLevel';
  }

  /** The vocabulary's words (word-level tokenizers only; a BPE vocabulary is not words). */
  vocabulary(): string[] | undefined {
    if (!this.isWordLevel) return undefined;
    return [...this.tokenizer.get_vocab(true).keys()].filter((w) => !this.specialTokens.has(w));
  }

  /** `what` names the prompt in warnings: 'prompt', 'negative prompt', 'detail prompt'. */
  tokenize(prompt: string, what = 'prompt'): TokenizedPrompt {
    const text = this.spec.lowercase ? prompt.toLowerCase() : prompt;
    const encoding = this.tokenizer.encode(text, { add_special_tokens: false });
    const unknown = new Set<string>();
    const ids = encoding.ids.map((id, i) => {
      const token = encoding.tokens[i];
      if (id === undefined || id === null || id === this.spec.unkId) {
        unknown.add(token);
        if (this.spec.unkId === null) throw new BadInputError(`The word "${token}" is not in the model's vocabulary.`);
        return this.spec.unkId;
      }
      return Number(id);
    });
    const window = this.spec.contextTokens;
    const truncated = ids.length > window;
    const warnings: string[] = [];
    if (unknown.size) warnings.push(unknownWordsWarning([...unknown], what));
    if (truncated) warnings.push(truncationWarning(promptCut(encoding.tokens, window)!, what));
    return {
      ids: ids.slice(0, window),
      tokens: encoding.tokens.slice(0, window),
      unknown: [...unknown],
      truncated,
      warnings,
    };
  }

  analyze(prompt: string): PromptAnalysis {
    const text = this.spec.lowercase ? prompt.toLowerCase() : prompt;
    const encoding = this.tokenizer.encode(text, { add_special_tokens: false });
    const unknown = new Set<string>();
    encoding.ids.forEach((id, i) => {
      if (id === undefined || id === null || id === this.spec.unkId) unknown.add(encoding.tokens[i]);
    });
    const cut = promptCut(encoding.tokens, this.spec.contextTokens);
    return { tokens: encoding.tokens, unknown: [...unknown], truncated: cut !== undefined, ...(cut && { cut }) };
  }
}

/** How many unknown words a warning names; the others are counted. */
const UNKNOWN_WORDS_SHOWN = 12;
/** How many of the kept tokens, and characters at most, a truncation warning quotes (their end). */
const KEPT_TOKENS_SHOWN = 6;
const KEPT_CHARS_SHOWN = 60;

function unknownWordsWarning(words: string[], what: string): string {
  const shown = words.slice(0, UNKNOWN_WORDS_SHOWN).join(', ');
  const more = words.length > UNKNOWN_WORDS_SHOWN ? ` and ${words.length - UNKNOWN_WORDS_SHOWN} more` : '';
  const where = what === 'prompt' ? '' : ` in the ${what}`;
  return `Unknown to the model${where} (read as the unknown token): ${shown}${more}.`;
}

/**
 * Where a prompt longer than the text window (`window` tokens) was cut, as every message shows it:
 * the end of what the model reads, quoted, and counts, never the cut text (a prompt may be
 * thousands of words long). Undefined when nothing was cut.
 */
export function promptCut(tokens: string[], window: number): PromptCut | undefined {
  if (tokens.length <= window) return undefined;
  const kept = tokens.slice(Math.max(0, window - KEPT_TOKENS_SHOWN), window).join(' ');
  const end = kept.length > KEPT_CHARS_SHOWN ? kept.slice(-KEPT_CHARS_SHOWN) : kept;
  const ellipsis = window > KEPT_TOKENS_SHOWN || end !== kept ? '…' : '';
  return { keptEnd: `${ellipsis}${end}`, read: window, cut: tokens.length - window };
}

const tokensWere = (n: number) => `${n} ${n === 1 ? 'token was' : 'tokens were'}`;

function truncationWarning(cut: PromptCut, what: string): string {
  return `The ${what} has ${cut.read + cut.cut} tokens; the model reads the first ${cut.read}, up to "${cut.keptEnd}", and the other ${tokensWere(cut.cut)} cut.`;
}

/**
 * A prompt as a one-line summary quotes it: whole when the model reads all of it, else as the
 * truncation warning does (the end of the kept part and how much was cut).
 */
export function quotePrompt(prompt: string, analysis: Pick<PromptAnalysis, 'cut'>): string {
  const { cut } = analysis;
  if (!cut) return `"${prompt}"`;
  return `"${cut.keptEnd}" (the first ${cut.read} of ${cut.read + cut.cut} tokens; the other ${tokensWere(cut.cut)} cut)`;
}

/**
 * Checks a prompt and tokenizes it; an empty prompt is a bad input. The same rules hold for the
 * negative and the detail prompt (`what` names them in messages and warnings).
 */
export function tokenizePrompt(tokenizer: PromptTokenizer, prompt: string, what = 'prompt'): TokenizedPrompt {
  if (typeof prompt !== 'string' || prompt.trim() === '') {
    if (what !== 'prompt') throw new BadInputError(`The ${what} is empty.`);
    throw new BadInputError('The prompt is empty: describe the image to generate, e.g. "a red circle on a blue background".');
  }
  const tokenized = tokenizer.tokenize(prompt, what);
  if (tokenized.ids.length === 0) throw new BadInputError(`The ${what} "${prompt}" has no tokens the model can read.`);
  return tokenized;
}

/** input_ids / attention_mask [B, P + T]: prefix, prompt, then padding (right-padded). */
export function textEncoderInputs(spec: TextEncoderSpec, ids: number[], images: number): { inputIds: Int32Array; mask: Int32Array; length: number } {
  const prefix = spec.prefixIds;
  const length = prefix.length + spec.contextTokens;
  const inputIds = new Int32Array(images * length).fill(spec.padId);
  const mask = new Int32Array(images * length);
  for (let b = 0; b < images; b++) {
    const row = b * length;
    prefix.forEach((id, j) => {
      inputIds[row + j] = id;
      mask[row + j] = 1;
    });
    ids.forEach((id, j) => {
      inputIds[row + prefix.length + j] = id;
      mask[row + prefix.length + j] = 1;
    });
  }
  return { inputIds, mask, length };
}

/** The T text features [T, D] of each prompt, from one text-encoder run over all of them. */
export async function encodeTexts(ort: Ort, session: GraphSession, spec: TextEncoderSpec, prompts: number[][], signal?: AbortSignal): Promise<Float32Array[]> {
  const count = prompts.length;
  const length = spec.prefixIds.length + spec.contextTokens;
  const inputIds = new Int32Array(count * length);
  const mask = new Int32Array(count * length);
  prompts.forEach((ids, b) => {
    const one = textEncoderInputs(spec, ids, 1);
    inputIds.set(one.inputIds, b * length);
    mask.set(one.mask, b * length);
  });
  const outputs = await session.run(
    { input_ids: int32Tensor(ort, inputIds, [count, length]), attention_mask: int32Tensor(ort, mask, [count, length]) },
    ['hidden'],
    signal,
  );
  const hidden = await readFloats(outputs.hidden);
  outputs.hidden.dispose();
  const { contextTokens: T, contextDim: D } = spec;
  const skip = spec.prefixIds.length;
  return prompts.map((_, b) => hidden.slice((b * length + skip) * D, (b * length + skip + T) * D));
}

/**
 * HART's CFG context [2B, T, D]: the prompt's features for the conditional rows, then for the
 * unconditional rows the negative prompt's features, or zeros (HART's null condition) without
 * one. `unconditional: 'none'` (no scale is guided) leaves those rows out: [B, T, D].
 */
export function contextTensor(ort: Ort, spec: TextEncoderSpec, conditional: Float32Array, unconditional: Float32Array | 'zeros' | 'none', images: number): Tensor {
  const { contextTokens: T, contextDim: D } = spec;
  const rows = unconditional === 'none' ? images : 2 * images;
  const context = new Float32Array(rows * T * D);
  for (let b = 0; b < images; b++) {
    context.set(conditional, b * T * D);
    if (unconditional instanceof Float32Array) context.set(unconditional, (images + b) * T * D);
  }
  return floatTensor(ort, context, [rows, T, D]);
}

