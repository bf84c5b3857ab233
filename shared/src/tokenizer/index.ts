export type { LoadedTokenizer, LoadTokenizerOptions, SpecialRole } from "./load-tokenizer.js";
export { loadTokenizer, tokenizerFromJson } from "./load-tokenizer.js";
export { TokenizerLoadError } from "./tokenizer-load-error.js";
export type { TrainBpeOptions } from "./train-bpe.js";
export { DEFAULT_TRAIN_BPE, trainBpe } from "./train-bpe.js";
export type { BpeTokenizerJson } from "./tokenizer-json.js";
export { TINY_SPECIAL_TOKENS } from "./tokenizer-json.js";
export { preTokenize, WORDISH_SPLIT_PATTERN } from "./pre-tokenize.js";
export { tokenizerCorpus, writeTrainedTokenizer } from "./train-toy-tokenizer.js";
