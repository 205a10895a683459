// Token ids of a text under a Hugging Face tokenizer.json, with the same library the engine uses
// (@huggingface/tokenizers), so the converter's prefix ids match the app's prompt ids.
// Usage: node tools/convert/tokenize_text.mjs TOKENIZER_JSON [TOKENIZER_CONFIG_JSON] < text
// Prints {"ids": [...]} on stdout. Special tokens are added as HF's tokenizer(text) does by default.
import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';

const [tokenizerPath, configPath] = process.argv.slice(2);
if (!tokenizerPath) {
  console.error('usage: node tokenize_text.mjs TOKENIZER_JSON [TOKENIZER_CONFIG_JSON] < text');
  process.exit(2);
}
const tokenizerJson = JSON.parse(readFileSync(tokenizerPath, 'utf8'));
const config = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : {};
const text = readFileSync(0, 'utf8');
const tokenizer = new Tokenizer(tokenizerJson, config);
const { ids } = tokenizer.encode(text);
process.stdout.write(JSON.stringify({ ids: Array.from(ids, Number) }));
