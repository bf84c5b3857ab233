import { test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { DescriptorIndex, answerReflection, decodeReflectionRequest } from "./reflection.js";

const index = DescriptorIndex.fromFile();

function request(field: number, value: string): Uint8Array {
  return new BinaryWriter().tag(1, WireType.LengthDelimited).string("h").tag(field, WireType.LengthDelimited).string(value).finish();
}

/** Field 4 (file_descriptor_response) -> file names; field 7 -> [code, message]. */
function parseResponse(bytes: Uint8Array): { files?: string[]; error?: [number, string]; services?: string[] } {
  const r = new BinaryReader(bytes);
  const out: { files?: string[]; error?: [number, string]; services?: string[] } = {};
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 4) {
      const inner = new BinaryReader(r.bytes());
      out.files = [];
      while (inner.pos < inner.len) {
        inner.tag();
        out.files.push(fromBinary(FileDescriptorProtoSchema, inner.bytes()).name);
      }
    } else if (no === 6) {
      const inner = new BinaryReader(r.bytes());
      out.services = [];
      while (inner.pos < inner.len) {
        inner.tag();
        const s = new BinaryReader(inner.bytes());
        s.tag();
        out.services.push(s.string());
      }
    } else if (no === 7) {
      const inner = new BinaryReader(r.bytes());
      inner.tag();
      const code = inner.int32();
      inner.tag();
      out.error = [code, inner.string()];
    } else r.skip(wt, no);
  }
  return out;
}

test("the descriptor set holds one file per .proto under its own name", () => {
  const names = index.fileNames();
  for (const f of [
    "rlmesh/v1/common.proto",
    "rlmesh/v1/jobs.proto",
    "rlmesh/v1/learner.proto",
    "rlmesh/v1/reward.proto",
    "rlmesh/v1/rollout.proto",
    "grpc/health/v1/health.proto",
    "grpc/reflection/v1/reflection.proto",
    "grpc/reflection/v1alpha/reflection.proto",
  ]) {
    assert.ok(names.includes(f), f);
  }
});

test("symbols resolve to their file: messages, nested map entries, fields, enum values, services, methods", () => {
  assert.equal(index.fileOfSymbol("rlmesh.v1.JobSpec"), "rlmesh/v1/jobs.proto");
  assert.equal(index.fileOfSymbol(".rlmesh.v1.JobSpec.group_size"), "rlmesh/v1/jobs.proto");
  assert.equal(index.fileOfSymbol("rlmesh.v1.PhaseTimings.SecondsEntry"), "rlmesh/v1/common.proto");
  assert.equal(index.fileOfSymbol("rlmesh.v1.JOB_STATE_RUNNING"), "rlmesh/v1/jobs.proto");
  assert.equal(index.fileOfSymbol("rlmesh.v1.JobService.WatchJob"), "rlmesh/v1/jobs.proto");
  assert.equal(index.fileOfSymbol("grpc.health.v1.Health"), "grpc/health/v1/health.proto");
  assert.equal(index.fileOfSymbol("rlmesh.v1.groupSize"), undefined);
});

test("file_by_filename answers the file first, then its transitive imports once each", () => {
  const res = parseResponse(answerReflection(index, [], request(3, "rlmesh/v1/jobs.proto")));
  assert.equal(res.files?.[0], "rlmesh/v1/jobs.proto");
  assert.deepEqual(res.files?.slice(1).sort(), ["rlmesh/v1/common.proto", "rlmesh/v1/learner.proto", "rlmesh/v1/rollout.proto"]);
});

test("unknown names are NOT_FOUND error responses; list_services lists what it was given", () => {
  assert.equal(parseResponse(answerReflection(index, [], request(4, "rlmesh.v1.Nope"))).error?.[0], 5);
  assert.equal(parseResponse(answerReflection(index, [], request(3, "nope.proto"))).error?.[0], 5);
  assert.equal(parseResponse(answerReflection(index, [], request(6, "rlmesh.v1.Nope"))).error?.[0], 5);
  assert.deepEqual(parseResponse(answerReflection(index, ["a.B", "c.D"], request(7, ""))).services, ["a.B", "c.D"]);
  assert.equal(parseResponse(answerReflection(index, [], new Uint8Array())).error?.[0], 3);
  assert.deepEqual(decodeReflectionRequest(request(4, "x.Y")), { host: "h", kind: "file_containing_symbol", value: "x.Y" });
});

test("a set missing an import is refused with the file's name", () => {
  const jobsOnly = index.fileWithImports("rlmesh/v1/jobs.proto")![0]!;
  const set = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(jobsOnly).finish();
  assert.throws(() => DescriptorIndex.fromDescriptorSet(set), /rlmesh\/v1\/jobs\.proto imports rlmesh\/v1\/common\.proto/);
});
