import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ProtoGrpcType as JobsProto } from "./gen/jobs.js";
import type { ProtoGrpcType as RolloutProto } from "./gen/rollout.js";
import type { ProtoGrpcType as LearnerProto } from "./gen/learner.js";

/** Fully-qualified service names (for health checks and logs). */
export const SERVICE_NAMES = {
  job: "rlmesh.v1.JobService",
  rollout: "rlmesh.v1.RolloutService",
  learner: "rlmesh.v1.LearnerService",
} as const;

/**
 * proto-loader options. They fix the shapes the generated types describe: camelCase fields,
 * 64-bit integers as JS numbers, enums as their string names, defaults filled in, and a
 * virtual field naming the set member of each oneof.
 */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const PROTO_FILES = [
  "rlmesh/v1/common.proto",
  "rlmesh/v1/reward.proto",
  "rlmesh/v1/rollout.proto",
  "rlmesh/v1/learner.proto",
  "rlmesh/v1/jobs.proto",
];

/** The repo's proto/ folder: RLMESH_PROTO_DIR, else found by walking up from this file. */
export function protoDir(): string {
  const fromEnv = process.env.RLMESH_PROTO_DIR;
  if (fromEnv) return fromEnv;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "proto", "rlmesh", "v1", "jobs.proto");
    if (existsSync(candidate)) return join(dir, "proto");
    dir = dirname(dir);
  }
  throw new Error("cannot find proto/rlmesh/v1/jobs.proto; set RLMESH_PROTO_DIR");
}

export type RlmeshProto = JobsProto & RolloutProto & LearnerProto;

let cached: { definition: protoLoader.PackageDefinition; proto: RlmeshProto } | undefined;

/** Loads (once) every rlmesh proto into a typed grpc-js package object. */
export function loadProto(): { definition: protoLoader.PackageDefinition; proto: RlmeshProto } {
  if (!cached) {
    const definition = protoLoader.loadSync(PROTO_FILES, { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir()] });
    const proto = grpc.loadPackageDefinition(definition) as unknown as RlmeshProto;
    cached = { definition, proto };
  }
  return cached;
}
