#!/usr/bin/env python3
"""A dynamic gRPC client driven by server reflection alone (a stand-in for grpcurl in CI).

It uses only grpcio, protobuf and stubs of the reflection protocol itself, which it generates
with protoc and grpc_python_plugin into a temporary folder (Debian packages no grpc_reflection):

  1. lists the services (list_services),
  2. fetches every service's file with file_containing_symbol and every import with
     file_by_filename, and loads each FileDescriptorProto into a fresh DescriptorPool,
  3. checks the descriptors are the .proto's own (snake_case fields, map entry messages),
  4. calls JobService.ListJobs and GetJob through message classes built from those descriptors.

Prints one JSON object on stdout. Exit 0 when every reflection step worked; RPC outcomes (jobs,
error codes) are in the JSON for the caller to judge.

usage: reflect_client.py HOST:PORT [--version v1alpha|v1] [--job-id ID] [--proto-include DIR]
"""
import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROTO_INCLUDE_CANDIDATES = [
    os.path.join(REPO, "node_modules", "@grpc", "reflection", "build", "proto"),
    "/usr/share/grpc-proto",  # Debian's grpc-proto package
]


def fail(msg):
    print(f"reflect_client: {msg}", file=sys.stderr)
    sys.exit(2)


def generate_reflection_stubs(version, include_dir, out_dir):
    """protoc + grpc_python_plugin on grpc/reflection/<version>/reflection.proto.

    The proto is copied to a top-level name (reflection_<version>.proto) so that the generated
    modules do not live under a `grpc` package, which would shadow grpcio itself.
    """
    src = os.path.join(include_dir, "grpc", "reflection", version, "reflection.proto")
    if not os.path.exists(src):
        fail(f"{src} not found (pass --proto-include DIR holding grpc/reflection/{version}/reflection.proto)")
    protoc = shutil.which(os.environ.get("PROTOC", "protoc"))
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        fail("protoc and grpc_python_plugin are needed: apt-get install -y protobuf-compiler protobuf-compiler-grpc")
    src_dir = os.path.join(out_dir, "src")
    os.makedirs(src_dir, exist_ok=True)
    name = f"reflection_{version}"
    shutil.copy(src, os.path.join(src_dir, f"{name}.proto"))
    subprocess.run(
        [protoc, f"-I{src_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
         f"--plugin=protoc-gen-grpc_python={plugin}", f"{name}.proto"],
        check=True,
    )
    sys.path.insert(0, out_dir)
    return importlib.import_module(f"{name}_pb2"), importlib.import_module(f"{name}_pb2_grpc")


def message_class(pool, desc):
    get = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get:
        return get(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--version", default="v1alpha", choices=["v1alpha", "v1"])
    ap.add_argument("--job-id", default="")
    ap.add_argument("--proto-include", default="")
    args = ap.parse_args()

    include = args.proto_include or next((d for d in PROTO_INCLUDE_CANDIDATES if os.path.isdir(d)), None)
    if not include:
        fail("no reflection .proto found; pass --proto-include DIR")
    tmp = tempfile.mkdtemp(prefix="reflect-stubs-")
    try:
        pb2, pb2_grpc = generate_reflection_stubs(args.version, include, tmp)
        out = run(args, pb2, pb2_grpc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, sort_keys=True))


def run(args, pb2, pb2_grpc):
    out = {"reflection": args.version}
    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=20)
    stub = pb2_grpc.ServerReflectionStub(channel)

    def ask_many(reqs):
        """Several requests on one bidirectional stream: one answer each, in order."""
        answers = list(stub.ServerReflectionInfo(iter([pb2.ServerReflectionRequest(host=args.target, **kw) for kw in reqs]), timeout=20))
        if len(answers) != len(reqs):
            fail(f"{len(reqs)} requests on one stream got {len(answers)} answers")
        out = []
        for res in answers:
            if res.WhichOneof("message_response") == "error_response":
                out.append((None, (res.error_response.error_code, res.error_response.error_message)))
            else:
                out.append((res, None))
        return out

    def ask(**kw):
        return ask_many([kw])[0]

    res, err = ask(list_services="")
    if err:
        fail(f"list_services: {err}")
    services = [s.name for s in res.list_services_response.service]
    out["services"] = services

    files = {}  # name -> FileDescriptorProto

    def take(res):
        for raw in res.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files.setdefault(fdp.name, fdp)

    for s, (res, err) in zip(services, ask_many([{"file_containing_symbol": s} for s in services])):
        if err:
            fail(f"file_containing_symbol {s}: {err}")
        take(res)
    # Every import resolvable by name, and the jobs file by name with its imports.
    res, err = ask(file_by_filename="rlmesh/v1/jobs.proto")
    if err:
        fail(f"file_by_filename rlmesh/v1/jobs.proto: {err}")
    out["jobs_file_answer"] = [descriptor_pb2.FileDescriptorProto.FromString(b).name for b in res.file_descriptor_response.file_descriptor_proto]
    take(res)
    pending = [d for f in list(files.values()) for d in f.dependency]
    while pending:
        dep = pending.pop()
        if dep in files:
            continue
        res, err = ask(file_by_filename=dep)
        if err:
            fail(f"file_by_filename {dep}: {err}")
        take(res)
        pending.extend(d for f in files.values() for d in f.dependency)
    out["files"] = sorted(files)

    # Errors are answers on the stream, not broken streams.
    _, err = ask(file_containing_symbol="rlmesh.v1.NoSuchThing")
    out["unknown_symbol_error"] = grpc.StatusCode.NOT_FOUND.value[0] == err[0] if err else False
    _, err = ask(file_by_filename="rlmesh/v1/no_such.proto")
    out["unknown_file_error"] = grpc.StatusCode.NOT_FOUND.value[0] == err[0] if err else False
    res, err = ask(file_containing_symbol="rlmesh.v1.JobService.GetJob")
    out["method_symbol_file"] = None if err else descriptor_pb2.FileDescriptorProto.FromString(res.file_descriptor_response.file_descriptor_proto[0]).name

    # Load every reflected file into a fresh pool, imports first.
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):
        if name in added:
            return
        for dep in files[name].dependency:
            add(dep)
        pool.AddSerializedFile(files[name].SerializeToString())
        added.add(name)

    for name in sorted(files):
        add(name)
    for name in files:
        pool.FindFileByName(name)
    out["pool_files"] = len(added)

    spec = pool.FindMessageTypeByName("rlmesh.v1.JobSpec")
    out["job_spec_fields"] = [f.name for f in spec.fields]
    out["job_spec_optional_oneofs"] = sorted(o.name for o in spec.oneofs)
    out["state_changed_fields"] = [f.name for f in pool.FindMessageTypeByName("rlmesh.v1.StateChanged").fields]
    timings = pool.FindMessageTypeByName("rlmesh.v1.PhaseTimings")
    entry = timings.nested_types_by_name.get("SecondsEntry")
    out["map_entry"] = bool(entry and entry.GetOptions().map_entry and timings.fields_by_name["seconds"].message_type is entry)
    out["health_method"] = pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"].full_name

    # Calls built from the reflected descriptors alone.
    svc = pool.FindServiceByName("rlmesh.v1.JobService")

    def call(method_name, **fields):
        m = svc.methods_by_name[method_name]
        req_cls, res_cls = message_class(pool, m.input_type), message_class(pool, m.output_type)
        rpc = channel.unary_unary(f"/{svc.full_name}/{m.name}", request_serializer=req_cls.SerializeToString, response_deserializer=res_cls.FromString)
        try:
            return json_format.MessageToDict(rpc(req_cls(**fields), timeout=20), preserving_proto_field_name=True), None
        except grpc.RpcError as e:
            return None, {"code": e.code().name, "details": e.details()}

    listed, err = call("ListJobs", limit=50)
    if err:
        fail(f"ListJobs: {err}")
    out["list_jobs"] = [{"id": j["id"], "state": j.get("state"), "spec_keys": sorted(j.get("spec", {}))} for j in listed.get("jobs", [])]
    job_id = args.job_id or (out["list_jobs"][0]["id"] if out["list_jobs"] else "")
    if job_id:
        got, err = call("GetJob", id=job_id)
        out["get_job"] = got if got else err
    _, err = call("GetJob", id="no-such-job")
    out["get_missing"] = err
    channel.close()
    return out


if __name__ == "__main__":
    main()
