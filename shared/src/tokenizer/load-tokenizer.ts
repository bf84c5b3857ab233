import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";
import { TINY_SPECIAL_TOKENS } from "./tokenizer-json.js";
import { TokenizerLoadError } from "./tokenizer-load-error.js";

export type SpecialRole = "mask" | "pad" | "eos" | "bos";

export interface LoadTokenizerOptions {
  /** Token text of each special role. @defaultValue the tiny coder's <|mask|>, <|pad|>, <|eos|>, <|bos|> */
  specialTokens?: Partial<Record<SpecialRole, string>>;
  /** Roles that must exist in the file, or loading fails. @defaultValue [] */
  requireSpecial?: readonly SpecialRole[];
}

export interface LoadedTokenizer {
  path: string;
  /** One past the largest id (model vocabulary and added tokens). */
  vocabSize: number;
  /** Ids of the special roles found in the file. */
  specialIds: Partial<Record<SpecialRole, number>>;
  /** Ids of `text`; no special tokens are added around it. */
  encode(text: string): number[];
  /** Text of `ids`; special tokens are kept unless `skipSpecial`. */
  decode(ids: readonly number[], options?: { skipSpecial?: boolean }): string;
  idToToken(id: number): string | undefined;
  tokenToId(token: string): number | undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Checks what the library would otherwise fail on obscurely (or silently); returns the problem or null. */
function findProblem(json: unknown): string | null {
  if (!isObject(json)) return "top level is not a JSON object";
  const model = json.model;
  if (!isObject(model)) return 'missing "model" object';
  const type = model.type ?? (model.merges !== undefined ? "BPE" : undefined);
  if (typeof type !== "string") return 'model has no "type"';
  if (!isObject(model.vocab) && !Array.isArray(model.vocab)) return `model (${type}) has no "vocab"`;
  if (type === "BPE" && !Array.isArray(model.merges)) return 'BPE model has no "merges" list';
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) return '"added_tokens" is not a list';
  for (const t of (json.added_tokens as unknown[] | undefined) ?? []) {
    if (!isObject(t) || typeof t.id !== "number" || typeof t.content !== "string")
      return 'an "added_tokens" entry lacks a numeric id or string content';
  }
  return null;
}

/**
 * Loads a HuggingFace tokenizer.json with @huggingface/tokenizers (offline): the tiny coder's
 * BPE and real exports (e.g. Qwen's) take the same path. A bad file throws TokenizerLoadError.
 */
export async function loadTokenizer(path: string, options: LoadTokenizerOptions = {}): Promise<LoadedTokenizer> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new TokenizerLoadError(path, `file cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new TokenizerLoadError(path, `not valid JSON (${(err as Error).message})`);
  }
  return tokenizerFromJson(json, path, options);
}

/** As loadTokenizer, from an already parsed object; `path` only names it in errors. */
export function tokenizerFromJson(json: unknown, path: string, options: LoadTokenizerOptions = {}): LoadedTokenizer {
  const problem = findProblem(json);
  if (problem) throw new TokenizerLoadError(path, problem);
  const obj = json as Record<string, unknown>;
  // The library requires these keys to exist, even when null.
  const filled = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...obj };
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(filled, { clean_up_tokenization_spaces: false });
  } catch (err) {
    throw new TokenizerLoadError(path, `rejected by @huggingface/tokenizers: ${(err as Error).message}`);
  }

  const vocab = tok.get_vocab(true);
  let maxId = -1;
  for (const id of vocab.values()) if (id > maxId) maxId = id;
  const names = { ...TINY_SPECIAL_TOKENS, ...options.specialTokens };
  const specialIds: Partial<Record<SpecialRole, number>> = {};
  for (const role of Object.keys(names) as SpecialRole[]) {
    const id = tok.token_to_id(names[role]);
    if (id !== undefined) specialIds[role] = id;
  }
  for (const role of options.requireSpecial ?? []) {
    if (specialIds[role] === undefined)
      throw new TokenizerLoadError(path, `special token for ${role} (${names[role]}) is not in the vocabulary`);
  }
  const size = maxId + 1;
  return {
    path,
    vocabSize: size,
    specialIds,
    encode: (t) => tok.encode(t, { add_special_tokens: false }).ids,
    decode: (ids, o) => {
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= size) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${size})`);
      }
      // The library rejects an empty list; an empty response is a valid decode.
      if (ids.length === 0) return "";
      return tok.decode([...ids], { skip_special_tokens: o?.skipSpecial ?? false, clean_up_tokenization_spaces: false });
    },
    idToToken: (id) => tok.id_to_token(id),
    tokenToId: (t) => tok.token_to_id(t),
  };
}
