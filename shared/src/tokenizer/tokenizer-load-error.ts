/** Thrown by loadTokenizer when a tokenizer.json is missing, unreadable or not usable; the message names the file and the problem. */
export class TokenizerLoadError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`cannot load tokenizer ${path}: ${problem}`);
    this.name = "TokenizerLoadError";
  }
}
