#!/usr/bin/env python3
"""Checks of the Python client (clients/python, on PYTHONPATH), run by test/src/python-client.test.ts.

  client_checks.py unit
      spec conversion and error fields, no server.
  client_checks.py mesh HOST:PORT MODEL_DIR DATASET
      against a real mesh: a bad spec is INVALID_ARGUMENT naming the field; a long job is cancelled
      mid-run (after its first step) and ends CANCELLED; cancelling it again is
      FAILED_PRECONDITION; get/list/watch from an offset.

Prints one JSON object on stdout.
"""
import json
import sys
import time

import grpc

import rlmesh_client
from rlmesh_client import Client, FailedPrecondition, InvalidArgument, NotFound, state_name


def unit():
    out = {}
    spec = rlmesh_client.to_job_spec({"model_dir": "m", "dataset": {"path": "d"}, "steps": 0, "decoding": {"temperature": 0}})
    # proto3 optional: an explicit 0 is sent as set (the api validates it as 0).
    out["steps_set"] = spec.HasField("steps")
    out["group_size_set"] = spec.HasField("group_size")
    out["temperature_set"] = spec.decoding.HasField("temperature")
    errors = {}
    for name, bad in {
        "unknown": {"group_sise": 8},
        "nested_unknown": {"dataset": {"pth": "x"}},
        "wrong_type": {"group_size": "eight"},
        "nested_type": {"decoding": {"temperature": "hot"}},
        "not_object": {"dataset": "x.jsonl"},
    }.items():
        try:
            rlmesh_client.to_job_spec(bad)
            errors[name] = None
        except InvalidArgument as e:
            errors[name] = {"code": e.code.name, "field": e.field, "details": e.details}
    out["errors"] = errors
    out["field_of"] = [
        rlmesh_client.field_of("spec.group_size: must be an integer in [2, 1024], got 1"),
        rlmesh_client.field_of("spec.extra_eval_datasets[1].path: file not found"),
        rlmesh_client.field_of("job abc not found"),
    ]
    return out


def mesh(target, model_dir, dataset):
    out = {}
    with Client(target, timeout=120) as c:
        # A bad spec: INVALID_ARGUMENT from the api, naming the field.
        try:
            c.submit({"model_dir": model_dir, "dataset": {"path": dataset}, "group_size": 1})
            out["bad_spec"] = None
        except InvalidArgument as e:
            out["bad_spec"] = {"code": e.code.name, "field": e.field, "details": e.details}
        try:
            c.get("no-such-job")
            out["missing"] = None
        except NotFound as e:
            out["missing"] = {"code": e.code.name}

        # A long job, cancelled after its first step.
        job = c.submit({
            "name": "py-cancel", "model_dir": model_dir, "dataset": {"path": dataset},
            "group_size": 4, "prompts_per_step": 2, "steps": 200, "seed": 3,
        })
        out["cancel_job_id"] = job.id
        kinds = []
        cancelled_at = None
        t0 = time.monotonic()
        for ev in c.watch(job.id):
            kinds.append(ev.kind)
            if ev.step and cancelled_at is None:
                cancelled_at = ev.step.step
                j = c.cancel(job.id, reason="python client test")
                out["cancel_answer_state"] = state_name(j)
        out["cancel_watch_s"] = round(time.monotonic() - t0, 1)
        out["cancelled_at_step"] = cancelled_at
        done = c.get(job.id)
        out["cancelled"] = {"state": state_name(done), "step": done.step, "error": done.error}
        out["event_kinds"] = sorted(set(kinds))
        out["event_count"] = len(kinds)
        # Resume from an offset: exactly the tail.
        tail = list(c.watch(job.id, from_offset=len(kinds) - 2))
        out["tail_offsets"] = [e.offset for e in tail]
        try:
            c.cancel(job.id)
            out["cancel_again"] = None
        except FailedPrecondition as e:
            out["cancel_again"] = {"code": e.code.name, "details": e.details}
        out["listed"] = [j.id for j in c.list()]
        out["listed_cancelled"] = [j.id for j in c.list(state="CANCELLED")]
    return out


def main():
    if sys.argv[1:2] == ["unit"]:
        out = unit()
    elif sys.argv[1:2] == ["mesh"] and len(sys.argv) == 5:
        out = mesh(*sys.argv[2:5])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
