#!/usr/bin/env python3
"""Runs the README's RL job on an rlmesh mesh (`npx rlmesh up`) and prints a step table.

    python3 clients/python/examples/run_job.py                      # the README's job.json
    python3 clients/python/examples/run_job.py --steps 5 --target 127.0.0.1:50051

Paths in the spec are read by the api, relative to its working directory (the repo root under
`rlmesh up`); pass absolute paths when the api runs elsewhere. Exit 0 when the job SUCCEEDED.
"""
import argparse
import sys

from rlmesh_client import Client, RlmeshError, state_name

# The README's job.json.
JOB = {
    "model_dir": "models/tiny-coder",
    "dataset": {"path": "datasets/toy/train.jsonl", "format": "rlmesh"},
    "eval_dataset": {"path": "datasets/toy/test-instances.jsonl", "limit": 100},
    "group_size": 8, "prompts_per_step": 8, "steps": 30, "seed": 1,
    "decoding": {"temperature": 1.0, "top_p": 0.95, "cache": "dual", "threshold": 0.9, "max_new_tokens": 64},
    "grpo": {"lr": 1e-4, "clip_low": 0.2, "clip_high": 0.28},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:50051", help="the api's gRPC address")
    ap.add_argument("--model-dir", help="model directory (on the api's host)")
    ap.add_argument("--dataset", help="training tasks (on the api's host)")
    ap.add_argument("--eval-dataset", help="held-out tasks (on the api's host)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--group-size", type=int)
    ap.add_argument("--prompts-per-step", type=int)
    ap.add_argument("--eval-limit", type=int)
    ap.add_argument("--seed", type=int)
    args = ap.parse_args()

    spec = {**JOB, "dataset": dict(JOB["dataset"]), "eval_dataset": dict(JOB["eval_dataset"])}
    if args.model_dir:
        spec["model_dir"] = args.model_dir
    if args.dataset:
        spec["dataset"]["path"] = args.dataset
    if args.eval_dataset:
        spec["eval_dataset"]["path"] = args.eval_dataset
    if args.eval_limit is not None:
        spec["eval_dataset"]["limit"] = args.eval_limit
    for key in ("steps", "group_size", "prompts_per_step", "seed"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)

    with Client(args.target) as client:
        try:
            job = client.submit(spec)
        except RlmeshError as err:
            print(f"submit refused: {err.code.name} on {err.field or 'the request'}: {err.details}", file=sys.stderr)
            return 2
        print(f"job {job.id} {state_name(job)}: {spec['steps']} steps of {spec['prompts_per_step']} prompts x {spec['group_size']}", flush=True)
        print(f"{'step':>5} {'reward':>7} {'pass':>6} {'informative':>11} {'policy':>6} {'loss':>8} {'s/step':>7}", flush=True)
        last_step_ms = None
        for ev in client.watch(job.id):
            if ev.step:
                s = ev.step
                # The step's own phases (rollout, reward, train, push), else the time since the last step.
                secs = sum(s.timings.seconds.values()) or ((ev.time_ms - last_step_ms) / 1000 if last_step_ms else 0.0)
                loss = "skipped" if s.train.skipped else f"{s.train.loss:.4f}"
                print(f"{s.step:>5} {s.reward_mean:>7.3f} {s.pass_rate:>6.3f} {s.informative_fraction:>11.2f} {'v' + str(s.policy_version):>6} {loss:>8} {secs:>7.2f}", flush=True)
                last_step_ms = ev.time_ms
            elif ev.eval:
                e = ev.eval
                print(f"  eval at step {e.step} ({e.split}, {e.mode}): pass@1 {e.pass_at1:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}] n={e.n}", flush=True)
            elif ev.state:
                print(f"  {state_name(ev.state.from_state)} -> {state_name(ev.state.to)}" + (f": {ev.state.reason}" if ev.state.reason else ""), flush=True)
            elif ev.log and ev.log.level in ("warn", "error"):
                print(f"  {ev.log.level}: {ev.log.message}", flush=True)
        done = client.get(job.id)
    print(f"job {done.id} {state_name(done)} after {done.step} steps; held-out pass@1 {done.eval_pass_at1:.3f}" + (f"; error: {done.error}" if done.error else ""))
    return 0 if state_name(done) == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
