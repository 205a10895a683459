// The text encoder's fixed ids (docs/model-package.md §5.5): HART's system prompt tokenized with
// the Qwen2 tokenizer.json alone (as the app tokenizes prompts), and the pad id from
// tokenizer_config.json, as tools/convert/converter.py and checkpoint.py find them.
import { Tokenizer } from '@huggingface/tokenizers';
import { CheckpointError } from '../errors';

/** Ids of the system prompt, `encode(text)` with default options, truncated to the text window. */
export function systemPromptIds(tokenizerJson: object, systemPrompt: string, window: number): number[] {
  const { ids } = new Tokenizer(tokenizerJson as ConstructorParameters<typeof Tokenizer>[0], {}).encode(systemPrompt);
  return Array.from(ids, Number).slice(0, window);
}

interface TokenizerJson {
  added_tokens?: { id: number; content: string }[];
  model?: { vocab?: unknown };
  padding?: { pad_id?: number } | null;
}

/** tokenizer_config.json's pad_token looked up in tokenizer.json; else tokenizer.json's padding. */
export function padTokenId(tokenizer: TokenizerJson, tokenizerConfig: Record<string, unknown> | null, folder: string): number {
  const ids = new Map<string, number>();
  const vocab = tokenizer.model?.vocab;
  if (vocab && typeof vocab === 'object' && !Array.isArray(vocab)) for (const [token, id] of Object.entries(vocab)) ids.set(token, Number(id));
  for (const t of tokenizer.added_tokens ?? []) ids.set(t.content, Number(t.id));
  let token = tokenizerConfig?.pad_token ?? null;
  if (token && typeof token === 'object') token = (token as { content?: unknown }).content ?? null;
  if (token === null && tokenizer.padding) return Number(tokenizer.padding.pad_id);
  if (token === null) throw new CheckpointError(`${folder}: no pad_token in tokenizer_config.json and no padding in tokenizer.json`);
  const id = ids.get(String(token));
  if (id === undefined) throw new CheckpointError(`${folder}: pad_token '${String(token)}' is not in tokenizer.json`);
  return id;
}
