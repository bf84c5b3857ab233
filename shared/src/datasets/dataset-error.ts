/** Thrown when a dataset row is malformed; names the file line and the field at fault. */
export class DatasetError extends Error {
  override name = "DatasetError";
  constructor(
    /** 1-based line of the JSONL file (0 when not line-based). */
    readonly line: number,
    /** Field path at fault, e.g. `test_list[2]` or `public_test_cases`. */
    readonly field: string,
    readonly detail: string,
    readonly file?: string,
  ) {
    super(line > 0 ? `${file ?? "dataset"}:${line}: field "${field}": ${detail}` : `${file ?? "dataset"}: ${detail}`);
  }
}
