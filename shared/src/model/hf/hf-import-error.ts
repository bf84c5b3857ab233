/** A Hugging Face checkpoint that cannot be imported; the message names the file and the key or tensor. */
export class HfImportError extends Error {
  override name = "HfImportError";
}
