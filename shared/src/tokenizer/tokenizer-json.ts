/** The subset of HuggingFace's tokenizer.json format that our BPE trainer writes. */
export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface BpeTokenizerJson {
  version: "1.0";
  truncation: null;
  padding: null;
  added_tokens: AddedTokenJson[];
  normalizer: null;
  pre_tokenizer: Record<string, unknown>;
  post_processor: null;
  decoder: Record<string, unknown>;
  model: {
    type: "BPE";
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: false;
    byte_fallback: false;
    ignore_merges: false;
    vocab: Record<string, number>;
    merges: [string, string][];
  };
}

/** Special tokens of the tiny coder, in id order (ids 0..3). */
export const TINY_SPECIAL_TOKENS = {
  mask: "<|mask|>",
  pad: "<|pad|>",
  eos: "<|eos|>",
  bos: "<|bos|>",
} as const;
