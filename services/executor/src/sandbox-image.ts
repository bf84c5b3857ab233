import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The sandbox image the executor runs candidates in. Built offline by
 * deploy/sandbox/build-image.sh, which reads this constant (keep the line format).
 */
export const SANDBOX_IMAGE_VERSION = "1";

/** Full tag of the sandbox image. */
export const SANDBOX_IMAGE = `rlmesh-sandbox:${SANDBOX_IMAGE_VERSION}`;

/** Uid of the unprivileged user candidates run as (created in the image). */
export const SANDBOX_UID = 10001;

/** Where build-image.sh puts the harness inside the image. */
export const SANDBOX_HARNESS_PATH = "/opt/rlmesh/harness/fork_server.py";

/** Where the harness sources live in the repository (baked into the image at build time). */
export const HARNESS_SOURCE_DIR = fileURLToPath(new URL("../harness/", import.meta.url));

/** Image label holding the harness hash (set by build-image.sh). */
export const HARNESS_SHA_LABEL = "rlmesh.harness.sha256";

/**
 * Hash of the harness sources, computed exactly as build-image.sh does
 * (`find . -name '*.py' | sort | xargs sha256sum | sha256sum`); undefined without sources.
 */
export function harnessSourceSha(dir: string = HARNESS_SOURCE_DIR): string | undefined {
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".py"))
    .map((f) => `./${f}`)
    .sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : Buffer.from(a) > Buffer.from(b) ? 1 : 0));
  if (files.length === 0) return undefined;
  const lines = files
    .map(
      (f) =>
        `${createHash("sha256")
          .update(readFileSync(join(dir, f)))
          .digest("hex")}  ${f}\n`,
    )
    .join("");
  return createHash("sha256").update(lines).digest("hex");
}
