"""rlmesh_client: run RL jobs on an rlmesh mesh from Python.

    from rlmesh_client import Client
    with Client("127.0.0.1:50051") as c:
        job = c.submit({"model_dir": "models/tiny-coder", "dataset": {"path": "datasets/toy/train.jsonl"}, "steps": 30})
        for ev in c.watch(job.id):
            print(ev)

The generated messages and stubs are in rlmesh_client.pb (jobs_pb2, common_pb2, ...).
"""
from .client import (
    MAX_MESSAGE_BYTES,
    TERMINAL_STATES,
    Client,
    DeadlineExceeded,
    EvalCompleted,
    Event,
    FailedPrecondition,
    InvalidArgument,
    Job,
    JobEvent,
    JobSpec,
    JobState,
    LogMessage,
    NotFound,
    RlmeshError,
    StateChanged,
    StepCompleted,
    Unavailable,
    field_of,
    state_name,
    to_job_spec,
)
from . import pb

__version__ = "0.1.0"
__all__ = [
    "Client", "Event", "RlmeshError", "InvalidArgument", "NotFound", "FailedPrecondition", "Unavailable",
    "DeadlineExceeded", "Job", "JobSpec", "JobEvent", "JobState", "StateChanged", "StepCompleted",
    "EvalCompleted", "LogMessage", "TERMINAL_STATES", "MAX_MESSAGE_BYTES", "field_of", "state_name",
    "to_job_spec", "pb",
]
