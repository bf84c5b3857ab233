// The one home of the repository's own paths. Everything the product reads by default (datasets,
// the shipped model, deploy scripts) lives inside the repository; nothing points outside it
// (a suite check, repo-boundary.test.ts, fails on any path that climbs out of the root).
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file compiles to shared/dist/repo-paths.js). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** MBPP (sanitized, CC-BY-4.0; see datasets/mbpp/README.md), 427 tasks with reference solutions. */
export const MBPP_PATH = join(REPO_ROOT, "datasets", "mbpp", "mbpp-sanitized.jsonl");

/** The shipped tiny diffusion coder. */
export const DEFAULT_MODEL_DIR = join(REPO_ROOT, "models", "tiny-coder");

/** The toy task suite's splits (datasets/toy/README.md). */
export const TOY_DATASET_DIR = join(REPO_ROOT, "datasets", "toy");
