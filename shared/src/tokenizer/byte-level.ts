/**
 * GPT-2's byte <-> printable-character table used by ByteLevel pre-tokenizers and
 * decoders: each byte becomes one visible character, so BPE works on text, not bytes.
 */
function buildByteToChar(): string[] {
  const printable: number[] = [];
  const push = (lo: number, hi: number): void => {
    for (let b = lo; b <= hi; b++) printable.push(b);
  };
  push(0x21, 0x7e);
  push(0xa1, 0xac);
  push(0xae, 0xff);
  const table: string[] = new Array<string>(256);
  const kept = new Set(printable);
  let shift = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(kept.has(b) ? b : 256 + shift++);
  }
  return table;
}

export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

const encoder = new TextEncoder();

/** UTF-8 bytes of `text`, each mapped to its ByteLevel character. */
export function toByteLevel(text: string): string {
  let out = "";
  for (const b of encoder.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}
