"""The rlmesh JobService from Python: submit, watch, get, list and cancel RL jobs."""
from __future__ import annotations

import difflib
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator, List, Mapping, Optional, Union

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from ._gen.rlmesh.v1 import jobs_pb2, jobs_pb2_grpc

JobSpec = jobs_pb2.JobSpec
Job = jobs_pb2.Job
JobEvent = jobs_pb2.JobEvent
StateChanged = jobs_pb2.StateChanged
StepCompleted = jobs_pb2.StepCompleted
EvalCompleted = jobs_pb2.EvalCompleted
LogMessage = jobs_pb2.LogMessage
JobState = jobs_pb2.JobState

#: States a job never leaves.
TERMINAL_STATES = frozenset({jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED})

#: The api's limit on message size (both ends).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# "spec.group_size: must be ...", "spec.extra_eval_datasets[1].path: file not found".
_FIELD_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?)*): ")


class RlmeshError(Exception):
    """A failed call: the gRPC status code, the server's message, and the field it names (or None).

    The api answers a bad request with INVALID_ARGUMENT whose message starts with the field's
    path, e.g. ``spec.group_size: must be an integer in [2, 1024], got 1``; ``field`` is that path.
    """

    def __init__(self, code: grpc.StatusCode, details: str, field: Optional[str] = None, method: str = ""):
        self.code = code
        self.details = details
        self.field = field if field is not None else field_of(details)
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code.name}: {details}")


class InvalidArgument(RlmeshError):
    """A bad request (INVALID_ARGUMENT); ``field`` names the offending field."""


class NotFound(RlmeshError):
    """No such job (NOT_FOUND)."""


class FailedPrecondition(RlmeshError):
    """Not in a state that allows it, e.g. cancelling a job that has ended (FAILED_PRECONDITION)."""


class Unavailable(RlmeshError):
    """The api cannot be reached (UNAVAILABLE)."""


class DeadlineExceeded(RlmeshError):
    """The call ran past its timeout (DEADLINE_EXCEEDED)."""


_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def field_of(details: str) -> Optional[str]:
    """The field path an error message starts with (``spec.group_size: ...``), else None."""
    m = _FIELD_RE.match(details or "")
    return m.group(1) if m else None


def _error(err: grpc.RpcError, method: str) -> RlmeshError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return _ERRORS.get(code, RlmeshError)(code, details or "", method=method)


def state_name(state: Union[int, Job]) -> str:
    """``SUCCEEDED`` for JOB_STATE_SUCCEEDED (a Job or its state)."""
    value = state.state if isinstance(state, Job) else state
    return JobState.Name(value).replace("JOB_STATE_", "")


def _state_value(state: Union[None, int, str]) -> int:
    if state is None:
        return jobs_pb2.JOB_STATE_UNSPECIFIED
    if isinstance(state, int):
        return state
    name = state.upper()
    return JobState.Value(name if name.startswith("JOB_STATE_") else f"JOB_STATE_{name}")


# --- specs ---------------------------------------------------------------------------------


def _is_repeated(f: FieldDescriptor) -> bool:
    # protobuf >= 5.x has is_repeated (7.x dropped label); 3.20-4.x only label.
    repeated = getattr(f, "is_repeated", None)
    return bool(repeated) if repeated is not None else f.label == FieldDescriptor.LABEL_REPEATED


def _check_keys(value: Any, desc: Descriptor, path: str) -> None:
    """Unknown keys, named by path with the nearest known field (json_format says less)."""
    if not isinstance(value, Mapping):
        raise InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, f"{path}: must be an object ({desc.name}), got {type(value).__name__}", field=path)
    known = {f.name: f for f in desc.fields}
    known.update({f.json_name: f for f in desc.fields})
    for key, item in value.items():
        f = known.get(key)
        here = f"{path}.{key}"
        if f is None:
            near = difflib.get_close_matches(str(key), [x.name for x in desc.fields], n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, f"{here}: unknown field of {desc.name}{hint}", field=here)
        if f.type != FieldDescriptor.TYPE_MESSAGE or item is None:
            continue
        if f.message_type.GetOptions().map_entry:
            continue
        if _is_repeated(f):
            if isinstance(item, list):
                for i, elem in enumerate(item):
                    _check_keys(elem, f.message_type, f"{here}[{i}]")
        else:
            _check_keys(item, f.message_type, here)


def _find_key(value: Any, key: str, path: str) -> Optional[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == key:
                return f"{path}.{k}"
            found = _find_key(v, key, f"{path}.{k}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_key(v, key, f"{path}[{i}]")
            if found:
                return found
    return None


def to_job_spec(spec: Union[JobSpec, Mapping[str, Any], str, os.PathLike]) -> JobSpec:
    """A JobSpec from a JobSpec, a dict in the JSON spec's shape (snake_case, as in job.json),
    or the path of a JSON spec file. Unknown fields and wrong types raise InvalidArgument naming
    the field (``spec.group_size``), as the api would."""
    if isinstance(spec, JobSpec):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        with open(spec, encoding="utf-8") as fh:
            spec = json.load(fh)
    _check_keys(spec, JobSpec.DESCRIPTOR, "spec")
    try:
        return json_format.ParseDict(spec, JobSpec())
    except json_format.ParseError as err:
        msg = str(err)
        at = re.search(r"at \"?JobSpec((?:\.\w+(?:\[\d+\])?)+)", msg)
        m = re.search(r"Failed to parse (\w+) field", msg)
        field = f"spec{at.group(1)}" if at else _find_key(spec, m.group(1), "spec") if m else None
        raise InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, f"{field or 'spec'}: {msg}", field=field or "spec") from None


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One event of a job's log. ``kind`` is "state", "step", "eval" or "log" and ``data`` the
    typed message of that kind (StateChanged, StepCompleted, EvalCompleted, LogMessage)."""

    offset: int
    time_ms: int
    job_id: str
    kind: str
    data: Union[StateChanged, StepCompleted, EvalCompleted, LogMessage, None]
    proto: JobEvent

    @staticmethod
    def from_proto(ev: JobEvent) -> "Event":
        kind = ev.WhichOneof("kind") or ""
        return Event(ev.offset, ev.time_ms, ev.job_id, kind, getattr(ev, kind) if kind else None, ev)

    @property
    def state(self) -> Optional[StateChanged]:
        return self.data if self.kind == "state" else None

    @property
    def step(self) -> Optional[StepCompleted]:
        return self.data if self.kind == "step" else None

    @property
    def eval(self) -> Optional[EvalCompleted]:
        return self.data if self.kind == "eval" else None

    @property
    def log(self) -> Optional[LogMessage]:
        return self.data if self.kind == "log" else None

    def __str__(self) -> str:
        d = self.data
        if self.kind == "state":
            return f"#{self.offset} state {state_name(d.from_state)} -> {state_name(d.to)}" + (f" ({d.reason})" if d.reason else "")
        if self.kind == "step":
            return f"#{self.offset} step {d.step}: reward {d.reward_mean:.3f}, pass {d.pass_rate:.3f}, policy v{d.policy_version}"
        if self.kind == "eval":
            return f"#{self.offset} eval step {d.step} {d.split} {d.mode}: pass@1 {d.pass_at1:.3f} (n={d.n})"
        if self.kind == "log":
            return f"#{self.offset} {d.level}: {d.message}"
        return f"#{self.offset} (empty event)"


# --- the client ----------------------------------------------------------------------------


class Client:
    """A client of the api's JobService at ``target`` ("host:port").

    >>> with Client("127.0.0.1:50051") as c:
    ...     job = c.submit({"model_dir": "models/tiny-coder", "dataset": {"path": "datasets/toy/train.jsonl"}})
    ...     for ev in c.watch(job.id):
    ...         print(ev)

    Every call raises RlmeshError (InvalidArgument, NotFound, FailedPrecondition, ...) with
    ``.code`` and ``.field``. Unary calls wait up to ``timeout`` seconds for the api (a restarting
    api is waited for); ``channel`` replaces the insecure channel (e.g. a secure one).
    """

    def __init__(self, target: str = "127.0.0.1:50051", *, timeout: float = 60.0, channel: Optional[grpc.Channel] = None):
        self.target = target
        self.timeout = timeout
        self._own_channel = channel is None
        self._channel = channel or grpc.insecure_channel(
            target,
            options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        )
        self._stub = jobs_pb2_grpc.JobServiceStub(self._channel)

    def close(self) -> None:
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, name: str, request: Any, timeout: Optional[float]) -> Any:
        try:
            return getattr(self._stub, name)(request, timeout=self.timeout if timeout is None else timeout, wait_for_ready=True)
        except grpc.RpcError as err:
            raise _error(err, name) from None

    def submit(self, spec: Union[JobSpec, Mapping[str, Any], str, os.PathLike], *, timeout: Optional[float] = None) -> Job:
        """Submits a job: a dict in the JSON spec's shape (snake_case), a JobSpec, or a JSON file's
        path. Returns the Job (QUEUED or RUNNING). Paths in the spec are read on the api's host."""
        return self._call("SubmitJob", jobs_pb2.SubmitJobRequest(spec=to_job_spec(spec)), timeout)

    def get(self, job_id: str, *, timeout: Optional[float] = None) -> Job:
        return self._call("GetJob", jobs_pb2.GetJobRequest(id=job_id), timeout)

    def list(self, state: Union[None, int, str] = None, limit: int = 0, *, timeout: Optional[float] = None) -> List[Job]:
        """Jobs, newest first as the api lists them; ``state`` filters ("RUNNING" or JOB_STATE_RUNNING)."""
        res = self._call("ListJobs", jobs_pb2.ListJobsRequest(state=_state_value(state), limit=limit), timeout)
        return list(res.jobs)

    def cancel(self, job_id: str, reason: str = "", *, timeout: Optional[float] = None) -> Job:
        """Cancels a queued or running job; an ended one raises FailedPrecondition naming its state."""
        return self._call("CancelJob", jobs_pb2.CancelJobRequest(id=job_id, reason=reason), timeout)

    def watch(self, job_id: str, from_offset: int = 0, *, reconnect: bool = True, max_reconnect_s: float = 60.0) -> Iterator[Event]:
        """Yields the job's events from ``from_offset`` (0 = the start), then live ones until the job
        ends. With ``reconnect`` a cut stream or an unreachable api is retried for up to
        ``max_reconnect_s`` seconds, resuming after the last event received (none lost or repeated)."""
        offset = from_offset
        down_since: Optional[float] = None
        while True:
            stream = None
            try:
                stream = self._stub.WatchJob(jobs_pb2.WatchJobRequest(id=job_id, from_offset=offset), wait_for_ready=True)
                for ev in stream:
                    down_since = None
                    offset = ev.offset + 1
                    yield Event.from_proto(ev)
                return
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else None
                if reconnect and code == grpc.StatusCode.UNAVAILABLE:
                    down_since = down_since or time.monotonic()
                    if time.monotonic() - down_since < max_reconnect_s:
                        time.sleep(0.5)
                        continue
                raise _error(err, "WatchJob") from None
            finally:
                if stream is not None:
                    stream.cancel()

    def wait(self, job_id: str, *, on_event: Any = None) -> Job:
        """Watches a job until it ends (calling ``on_event(event)`` for each event) and returns it."""
        for ev in self.watch(job_id):
            if on_event:
                on_event(ev)
        return self.get(job_id)

    def run(self, spec: Union[JobSpec, Mapping[str, Any], str, os.PathLike], *, on_event: Any = None) -> Job:
        """Submits a job and waits for it to end; returns the ended Job."""
        return self.wait(self.submit(spec).id, on_event=on_event)
