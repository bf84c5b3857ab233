import { HfImportError } from "./hf-import-error.js";

/** Token ↔ id of a tokenizer.json (model vocab and added tokens). */
export interface TokenizerTable {
  idOf: Map<string, number>;
  tokenOf: Map<number, string>;
  /** Largest id + 1. */
  size: number;
}

export function tokenizerTable(raw: unknown, file = "tokenizer.json"): TokenizerTable {
  if (typeof raw !== "object" || raw === null) throw new HfImportError(`${file}: not a JSON object`);
  const tok = raw as { model?: { vocab?: unknown }; added_tokens?: unknown };
  const idOf = new Map<string, number>();
  const vocab = tok.model?.vocab;
  if (Array.isArray(vocab)) vocab.forEach((entry, i) => idOf.set(String(Array.isArray(entry) ? entry[0] : entry), i));
  else if (vocab && typeof vocab === "object") for (const [k, v] of Object.entries(vocab)) idOf.set(k, Number(v));
  else throw new HfImportError(`${file}: model.vocab is missing`);
  const added = tok.added_tokens ?? [];
  if (!Array.isArray(added)) throw new HfImportError(`${file}: added_tokens must be a list`);
  for (const t of added as { id?: unknown; content?: unknown }[]) {
    if (typeof t.id !== "number" || typeof t.content !== "string")
      throw new HfImportError(`${file}: added_tokens entry ${JSON.stringify(t)} needs an id and a content`);
    idOf.set(t.content, t.id);
  }
  const tokenOf = new Map<number, string>();
  let size = 0;
  for (const [k, id] of idOf) {
    tokenOf.set(id, k);
    size = Math.max(size, id + 1);
  }
  return { idOf, tokenOf, size };
}

export type HfSpecialRole = "mask" | "pad" | "eos";

export interface SpecialIds {
  mask: number;
  pad: number;
  eos: number;
  expand?: number;
  delete?: number;
  /** Token text of each id, for the manifest's special_tokens (loadModel re-checks them). */
  tokens: { mask: string; pad: string; eos: string; expand?: string; delete?: string };
  /** Where each id was read, e.g. "config.json mask_token_id". */
  sources: Record<string, string>;
}

interface Sources {
  config: Record<string, unknown>;
  generationConfig: Record<string, unknown> | null;
  tokenizerConfig: Record<string, unknown> | null;
  tokenizer: TokenizerTable;
  /** Logit width (config.json vocab_size / embedding_size). */
  vocabSize: number;
  vocabKey: string;
  idKeys: { mask: string; pad: string; eos: string };
  /** Ids the user states (import-hf --mask-id/--pad-id/--eos-id): they win over the files, which then need not agree. */
  overrides?: Partial<Record<HfSpecialRole, number>>;
}

/** The text of a tokenizer_config.json special-token entry: a string or `{ content }`. */
function tokenText(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return null;
}

/**
 * Mask, pad and eos ids from the checkpoint's own files, never guessed: config.json `<role>_token_id`,
 * then generation_config.json `<role>_token_id`, then tokenizer_config.json `<role>_token` (looked up
 * in tokenizer.json). The first found is the id; every other source that states one must agree
 * (generation_config's eos may be a list that contains it). Missing everywhere, or contradictory,
 * is an error naming the file and key. `<|expand|>` / `<|delete|>` are taken when the vocabulary
 * has them (DreamOn), cross-checked with config.json `expand_token_id` / `delete_token_id` if set.
 */
export function resolveSpecialIds(s: Sources): SpecialIds {
  const sources: Record<string, string> = {};
  const ids: Partial<Record<HfSpecialRole | "expand" | "delete", number>> = {};
  for (const role of ["mask", "pad", "eos"] as const) {
    const key = s.idKeys[role];
    const stated = s.overrides?.[role];
    if (stated !== undefined) {
      if (!Number.isInteger(stated) || stated < 0 || stated >= s.vocabSize) {
        throw new HfImportError(`--${role}-id ${stated}: must be an integer in [0, ${s.vocabSize}) (config.json ${s.vocabKey})`);
      }
      if (!s.tokenizer.tokenOf.has(stated)) throw new HfImportError(`tokenizer.json: has no token with id ${stated} (--${role}-id)`);
      ids[role] = stated;
      sources[role] = `command line --${role}-id`;
      continue;
    }
    const found: { where: string; ids: number[] }[] = [];
    const numeric = (file: string, obj: Record<string, unknown> | null, allowList: boolean) => {
      if (!obj || obj[key] === undefined || obj[key] === null) return;
      const v = obj[key];
      if (typeof v === "number" && Number.isInteger(v) && v >= 0) found.push({ where: `${file} ${key}`, ids: [v] });
      else if (allowList && Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && (x as number) >= 0)) {
        found.push({ where: `${file} ${key}`, ids: v as number[] });
      } else
        throw new HfImportError(
          `${file}: ${key} must be a non-negative integer${allowList ? " or a list of them" : ""}, got ${JSON.stringify(v)}`,
        );
    };
    numeric("config.json", s.config, false);
    numeric("generation_config.json", s.generationConfig, true);
    const tcKey = `${role}_token`;
    const text = s.tokenizerConfig ? tokenText(s.tokenizerConfig[tcKey]) : null;
    if (s.tokenizerConfig && s.tokenizerConfig[tcKey] !== undefined && s.tokenizerConfig[tcKey] !== null && text === null) {
      throw new HfImportError(
        `tokenizer_config.json: ${tcKey} must be a string or {"content": ...}, got ${JSON.stringify(s.tokenizerConfig[tcKey])}`,
      );
    }
    if (text !== null) {
      const id = s.tokenizer.idOf.get(text);
      if (id === undefined) throw new HfImportError(`tokenizer_config.json: ${tcKey} "${text}" is not a token of tokenizer.json`);
      found.push({ where: `tokenizer_config.json ${tcKey} "${text}"`, ids: [id] });
    }
    const primary = found.find((f) => f.ids.length === 1) ?? found[0];
    if (!primary) {
      throw new HfImportError(
        `config.json: ${key} is missing (and no ${key} in generation_config.json, no ${tcKey} in tokenizer_config.json): the ${role} id is never guessed`,
      );
    }
    const id = primary.ids[0]!;
    for (const f of found) {
      if (!f.ids.includes(id)) {
        throw new HfImportError(
          `${f.where.split(" ")[0]}: ${f.where.split(" ").slice(1).join(" ")} = ${JSON.stringify(f.ids.length === 1 ? f.ids[0] : f.ids)} contradicts ${primary.where} = ${id} (state the ${role} id with --${role}-id to choose)`,
        );
      }
    }
    if (id >= s.vocabSize)
      throw new HfImportError(`${primary.where.split(" ")[0]}: ${key} ${id} is not below config.json ${s.vocabKey} ${s.vocabSize}`);
    if (!s.tokenizer.tokenOf.has(id)) throw new HfImportError(`tokenizer.json: has no token with id ${id} (${primary.where})`);
    ids[role] = id;
    sources[role] = primary.where;
  }
  for (const role of ["expand", "delete"] as const) {
    const text = `<|${role}|>`;
    const fromTok = s.tokenizer.idOf.get(text);
    const key = `${role}_token_id`;
    const fromCfg = s.config[key];
    if (fromCfg !== undefined && fromCfg !== null) {
      if (typeof fromCfg !== "number" || !Number.isInteger(fromCfg))
        throw new HfImportError(`config.json: ${key} must be an integer, got ${JSON.stringify(fromCfg)}`);
      if (fromTok !== undefined && fromTok !== fromCfg)
        throw new HfImportError(`config.json: ${key} = ${fromCfg} contradicts tokenizer.json "${text}" = ${fromTok}`);
      if (!s.tokenizer.tokenOf.has(fromCfg))
        throw new HfImportError(`tokenizer.json: has no token with id ${fromCfg} (config.json ${key})`);
      ids[role] = fromCfg;
      sources[role] = `config.json ${key}`;
    } else if (fromTok !== undefined) {
      ids[role] = fromTok;
      sources[role] = `tokenizer.json "${text}"`;
    }
  }
  const { mask, pad, eos } = ids as Record<HfSpecialRole, number>;
  if (mask === pad || mask === eos) {
    throw new HfImportError(
      `${sources["mask"]!.split(" ")[0]}: mask id ${mask} equals the ${mask === pad ? "pad" : "eos"} id (${sources[mask === pad ? "pad" : "eos"]}): a diffusion model needs a distinct mask`,
    );
  }
  const tok = (id: number) => s.tokenizer.tokenOf.get(id)!;
  const tokens: SpecialIds["tokens"] = { mask: tok(mask), pad: tok(pad), eos: tok(eos) };
  const out: SpecialIds = { mask, pad, eos, tokens, sources };
  if (ids.expand !== undefined) {
    out.expand = ids.expand;
    tokens.expand = tok(ids.expand);
  }
  if (ids.delete !== undefined) {
    out.delete = ids.delete;
    tokens.delete = tok(ids.delete);
  }
  return out;
}
