"""Fork server: PID 1 of a sandbox container (or a one-shot server with --once).

Protocol on stdin/stdout: frames of a 4-byte big-endian length + UTF-8 JSON. On start it writes
{"ready": true}; then for each request {id, code, tests, limits} it writes one response
{id, status, tests_run, tests_passed, tests_total, duration_ms, stderr_tail, detail}.

PID 1 never reads a request itself. It forks one persistent supervisor, which reads the
requests, and per request forks from its own clean warm interpreter (which never held a request)
two processes, and hands their pipes and pidfds to the supervisor (SCM_RIGHTS):
  - the candidate process (runner.py), which will run the candidate program and nothing else;
  - the judge process (judge.py), which runs the test code and reaches the candidate only through
    stubs that exchange plain data with the candidate process over a private pair of pipes.
The judge reports each test to the supervisor on its own pipe (nonce-tagged); the candidate
process has no pipe to the supervisor for function-style tests. stdin/stdout tests are run by
the candidate process in one forked child per case, and judged by the supervisor (stdout).
The supervisor answers on stdout after PID 1 killed and reaped every other process; PID 1
answers for it only if a candidate killed or stopped it (then a fresh supervisor is forked).

Why this is safe as PID 1 of the container's pid namespace:
  - SIGKILL/SIGSTOP from inside the namespace do not reach PID 1, and every other signal is
    ignored here, so a candidate cannot kill the fork server (it can kill the judge process,
    which then never reports a pass);
  - PR_SET_DUMPABLE=0 (inherited by the judge) makes /proc/<pid>/{mem,fd,environ} of both
    unreadable for the same-uid candidate, so it can neither write to their pipes nor read their
    memory;
  - expected values and test code never enter the candidate process;
  - after each request PID 1 SIGKILLs every process but the supervisor and reaps until none is
    left (it is init: every orphan is its child), and the tmpfs (/tmp, /dev/shm) is wiped.
"""

import gc
import json
import math
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import judge as judge_process  # noqa: E402  (pre-imported so a fork starts with the harness loaded)
import runner  # noqa: E402

PROTOCOL_VERSION = 2
MAX_REQUEST_BYTES = 64 << 20
MAX_RESULT_STREAM_BYTES = 64 << 20
STDERR_TAIL_BYTES = 4096
FLOAT_REL_TOL = 1e-6
FLOAT_ABS_TOL = 1e-9
WIPE_ROOTS = ("/tmp", "/dev/shm")
PR_SET_DUMPABLE = 4


def _set_not_dumpable():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


# ---------------------------------------------------------------- framing

def read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(fd):
    head = read_exact(fd, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > MAX_REQUEST_BYTES:
        raise ValueError("request frame too large")
    body = read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body)


def write_frame(fd, obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    data = memoryview(struct.pack(">I", len(body)) + body)
    while data:
        data = data[os.write(fd, data):]


# ---------------------------------------------------------------- comparison (judge side)

def _float_or_none(s):
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def stdout_matches(actual, expected):
    """LiveCodeBench-style: strip, per-line strip, trailing newlines ignored, floats within tolerance."""
    a = [line.strip() for line in actual.strip().splitlines()]
    e = [line.strip() for line in expected.strip().splitlines()]
    if a == e:
        return True
    if len(a) != len(e):
        return False
    for la, le in zip(a, e):
        if la == le:
            continue
        ta, te = la.split(), le.split()
        if len(ta) != len(te):
            return False
        for x, y in zip(ta, te):
            if x == y:
                continue
            fx, fy = _float_or_none(x), _float_or_none(y)
            if fx is None or fy is None or not math.isclose(fx, fy, rel_tol=FLOAT_REL_TOL, abs_tol=FLOAT_ABS_TOL):
                return False
    return True


# ---------------------------------------------------------------- runner process

def _close_range_works():
    """Whether close_range(2) is there (Linux >= 5.9, and not denied by a seccomp profile): probed
    once on a range no descriptor is in. Without it os.closerange would close() every number up
    to the ceiling, one call each."""
    try:
        import ctypes
        fn = ctypes.CDLL(None, use_errno=True).close_range
    except (OSError, AttributeError):
        return False
    return fn(ctypes.c_uint(1 << 30), ctypes.c_uint(1 << 30), ctypes.c_uint(0)) == 0


_CLOSE_RANGE = _close_range_works()
# Past every descriptor a process here can hold (the soft RLIMIT_NOFILE).
_FD_CEILING = os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 1 << 20


def _close_all_except(keep):
    """Closes every descriptor not in `keep`: with close_range(2), a few closerange calls (listing
    /proc/self/fd and closing one by one ran enough Python to copy ~80 shared pages, ~0.3 ms, in
    every fork); without it, what /proc/self/fd lists."""
    if not _CLOSE_RANGE:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        return
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _FD_CEILING)


def _child(keep, fd1, fd2, body):
    """In a fresh fork: fds 0/1/2 and `keep` only, then body(); never returns. Its /dev/null is
    its own open file (flags or locks a candidate sets on it reach no later run)."""
    try:
        devnull = os.open("/dev/null", os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull if fd1 is None else fd1, 1)
        os.dup2(devnull if fd2 is None else fd2, 2)
        _close_all_except({0, 1, 2} | set(keep))
        body()
        os._exit(0)
    except BaseException:
        os._exit(3)
    finally:
        os._exit(4)


def _pidfd(pid):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class Runner:
    """The candidate process and the judge process for the next request, forked before it is read.

    Pipes: fork server -> candidate (job), candidate -> fork server (stdio results), candidate
    stdout/stderr -> fork server, judge <-> candidate (calls and answers), fork server -> judge
    (job), judge -> fork server (results). The candidate is forked first, so it never inherits
    anything of the judge's (its pipes to the fork server, its pidfd); each child closes every
    descriptor that is not its own before doing anything else.
    """

    def __init__(self, run_dir, new_session, judge_server=None):
        self.run_dir = run_dir
        job_r, self.job_w = os.pipe()
        self.result_r, result_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        j2c_r, j2c_w = os.pipe()
        c2j_r, c2j_w = os.pipe()

        def candidate():
            if new_session:
                os.setsid()
            spec = read_frame(job_r)
            os.close(job_r)
            if spec is None:
                return
            runner.apply_limits(spec["limits"], run_dir)
            runner.run_job(spec, (result_w, j2c_r, c2j_w))

        pid = os.fork()
        if pid == 0:
            _child({job_r, result_w, j2c_r, c2j_w}, out_w, err_w, candidate)
        self.pid = pid
        for fd in (job_r, result_w, out_w, err_w, j2c_r, c2j_w):
            os.close(fd)
        self.pidfd = _pidfd(pid)

        jjob_r, self.jjob_w = os.pipe()
        self.jresult_r, jresult_w = os.pipe()
        cand_pidfd = self.pidfd
        if judge_server is not None:
            # A judge process that served earlier runs (clean ones only) gets this run's pipes.
            fds = [jjob_r, jresult_w, c2j_r, j2c_w] + ([cand_pidfd] if cand_pidfd is not None else [])
            try:
                socket.send_fds(judge_server["sock"], [b'{"t":"job"}'], fds)
            finally:
                for fd in (jjob_r, jresult_w, c2j_r, j2c_w):
                    os.close(fd)
            self.judge_pid = judge_server["pid"]
            self.judge_pidfd = _pidfd(self.judge_pid)
            return

        def judge_proc():
            spec = read_frame(jjob_r)
            os.close(jjob_r)
            if spec is None:
                return
            judge_limits(spec["limits"], run_dir)
            reporter = runner.Reporter(jresult_w, spec["nonce"])
            try:
                judge_process.run(spec, reporter, judge_process.Channel(c2j_r, j2c_w, cand_pidfd))
            except BaseException as exc:  # a harness bug: fail the run, say where
                reporter.send("test_error", msg="judge: " + judge_process._short(exc))

        keep = {jjob_r, jresult_w, c2j_r, j2c_w}
        if cand_pidfd is not None:
            keep.add(cand_pidfd)
        jpid = os.fork()
        if jpid == 0:
            _child(keep, None, None, judge_proc)
        self.judge_pid = jpid
        for fd in (jjob_r, jresult_w, c2j_r, j2c_w):
            os.close(fd)
        self.judge_pidfd = _pidfd(jpid)

    FD_NAMES = ("job_w", "result_r", "out_r", "err_r", "pidfd", "jjob_w", "jresult_r", "judge_pidfd")

    def handoff(self):
        """(message, fds) that give the supervisor this pair: its pids and every descriptor the
        fork server's side holds (pipe ends and pidfds), sent with SCM_RIGHTS."""
        names = [n for n in self.FD_NAMES if getattr(self, n) is not None]
        return {"pid": self.pid, "judge_pid": self.judge_pid, "run_dir": self.run_dir, "fds": names}, \
            [getattr(self, n) for n in names]

    @classmethod
    def received(cls, msg, fds):
        """The supervisor's handle on a pair PID 1 forked (see handoff)."""
        proc = cls.__new__(cls)
        for n in cls.FD_NAMES:
            setattr(proc, n, None)
        for n, fd in zip(msg["fds"], fds):
            if n not in cls.FD_NAMES:
                raise ValueError("unknown descriptor %r" % n)
            setattr(proc, n, fd)
        proc.pid, proc.judge_pid, proc.run_dir = msg["pid"], msg["judge_pid"], msg["run_dir"]
        return proc

    def close_fds(self):
        for fd in (self.job_w, self.result_r, self.out_r, self.err_r, self.pidfd, self.jjob_w,
                   self.jresult_r, self.judge_pidfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


def judge_limits(limits, run_dir, persistent=False):
    """The judge runs trusted test code, but on data the candidate chose: bound it too.

    A judge process that serves several runs sets soft limits only (a hard limit could not be
    raised again for the next run); its CPU limit counts from what it has used so far, and
    SIGXCPU ends it (judge_server)."""
    import resource
    mem = int(limits["memory_mb"]) * 1024 * 1024
    cpu = int(limits["total_timeout_ms"] / 1000) + 2
    fsize = int(limits["file_size_mb"]) * 1024 * 1024
    if persistent:
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu += int(used.ru_utime + used.ru_stime) + 1
        for res, soft in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, fsize)):
            resource.setrlimit(res, (soft, resource.getrlimit(res)[1]))
    else:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    runner.set_environ(run_dir)
    os.chdir(run_dir)


# ---------------------------------------------------------------- judging one request

class Judgement:
    def __init__(self, total):
        self.total = total
        self.loaded = False
        self.load_error = None
        self.test_error = None
        self.outcomes = {}  # i -> (passed, reason)
        self.started = -1
        self.ended = False
        self.kill_reason = None  # timeout | starved | output_limit | protocol
        self.exit_signal = 0
        self.candidate_signal = 0
        self.oom_killed = None  # True/False when the cgroup counter is readable
        self.detail = ""


FUNCTION_KINDS = ("assert", "call")


def _specs(req, nonce, output_cap):
    """(candidate spec, judge spec or None). The candidate's holds no test code or expectations."""
    tests = req["tests"]
    kind = tests["kind"]
    limits = req["limits"]
    if kind == "stdio":
        return {"nonce": nonce, "kind": kind, "code": req["code"], "limits": limits,
                "inputs": [c["input"] for c in tests["cases"]], "output_cap": output_cap}, None
    if kind not in FUNCTION_KINDS:
        raise ValueError("unknown test kind %r" % kind)
    cand = {"kind": "function", "code": req["code"], "limits": limits}
    jspec = {"nonce": nonce, "kind": kind, "limits": limits}
    if kind == "assert":
        jspec.update(setup=tests.get("setup", ""), tests=tests["tests"], entry_point=tests.get("entry_point"))
    else:
        jspec.update(fn=tests["fn"], cases=[{"args": c["args"], "expected": c["expected"]} for c in tests["cases"]])
    return cand, jspec


def _expected(req):
    tests = req["tests"]
    if tests["kind"] == "stdio":
        return [c["output"] for c in tests["cases"]]
    return None


STARVE_CREDIT_MAX = 3.0


def _sched_delay_ns(pid):
    """Nanoseconds this process has waited on a run queue (/proc/PID/schedstat), None if gone."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _runs_alone(pid):
    """The candidate runs one thread and has no children: then nothing of the sandbox's own can
    keep it from a CPU, and a run-queue wait is the host's doing. Candidates that start threads or
    processes can contend with themselves, so they get no credit."""
    try:
        with open("/proc/%d/status" % pid) as f:
            threads = next((int(line.split()[1]) for line in f if line.startswith("Threads:")), 0)
        if threads != 1:
            return False
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return f.read().strip() == ""
    except (OSError, ValueError, IndexError):
        return False


class StarveCredit:
    """Run-queue wait credited to a run, sampled at least every STARVE_SAMPLE_S: per process, its
    wait since the last sample (each process from its own baseline: a reused judge's counter holds
    earlier runs); an interval counts only while the candidate runs alone (see _runs_alone).

    A sample reads three or four /proc files; the judging loop takes one when STARVE_SAMPLE_S
    passed since the last (`due`) or before it decides a deadline, not on every message (a
    request's handful of messages made it ~17 file reads, a fifth of the supervisor's CPU)."""

    def __init__(self, candidate, others):
        self.candidate = candidate
        self.last = {p: _sched_delay_ns(p) for p in [candidate] + list(others)}
        self.seconds = 0.0
        self.sampled_at = time.monotonic()

    def due(self, now):
        return now - self.sampled_at >= STARVE_SAMPLE_S

    def update(self):
        self.sampled_at = time.monotonic()
        alone = _runs_alone(self.candidate)
        worst = 0
        for pid, prev in list(self.last.items()):
            now = _sched_delay_ns(pid)
            if now is not None and prev is not None:
                worst = max(worst, now - prev)
            self.last[pid] = now
        if alone:
            self.seconds += worst / 1e9
        return self.seconds


STARVE_SAMPLE_S = 0.1


def _total_tests(req):
    tests = req["tests"]
    return len(tests["tests"]) if tests["kind"] == "assert" else len(tests["cases"])


def judge(req, proc, in_container=False, exit_signals=None):
    """Runs one request on a forked candidate/judge pair. exit_signals(), when given, returns the
    signals that ended the candidate and the judge process on their own (0 if none) for a
    caller that is not their parent (the persistent supervisor asks PID 1)."""
    limits = req["limits"]
    started = time.monotonic()
    total_deadline = started + limits["total_timeout_ms"] / 1000.0
    test_timeout = limits["test_timeout_ms"] / 1000.0
    out_cap = int(limits["output_limit_bytes"])
    nonce = os.urandom(16).hex()
    expected = _expected(req)
    kind = req["tests"]["kind"]
    j = Judgement(_total_tests(req))
    oom_before = oom_kills() if in_container else None
    stdio_cap = out_cap
    if expected is not None and kind == "stdio":
        stdio_cap = max(out_cap, 2 * max((len(e) for e in expected), default=0) + 1024)
    cand_spec, judge_spec = _specs(req, nonce, stdio_cap)
    # Test results come from the judge process for function-style tests, and from the candidate
    # process (stdout of each case, judged here) for stdio tests. The judge's messages are the
    # only ones that can say a test passed.
    trusted = judge_spec is not None
    if trusted:
        write_frame(proc.jjob_w, judge_spec)
    os.close(proc.jjob_w)
    proc.jjob_w = None
    write_frame(proc.job_w, cand_spec)
    os.close(proc.job_w)
    proc.job_w = None
    del cand_spec, judge_spec

    sel = selectors.DefaultSelector()
    sel.register(proc.jresult_r if trusted else proc.result_r, selectors.EVENT_READ, "result")
    sel.register(proc.out_r, selectors.EVENT_READ, "out")
    sel.register(proc.err_r, selectors.EVENT_READ, "err")
    exit_fd = proc.judge_pidfd if trusted else proc.pidfd
    if exit_fd is not None:
        sel.register(exit_fd, selectors.EVENT_READ, "exit")
    result_buf = bytearray()
    result_bytes = 0
    out_bytes = 0
    stderr_tail = bytearray()
    phase_deadline = started + test_timeout  # loading the program gets one test's time
    runner_exited = False

    def handle(msg):
        if not isinstance(msg, dict) or msg.get("n") != nonce:
            j.kill_reason = "protocol"
            j.detail = "message without the run nonce"
            return
        t = msg.get("t")
        i = msg.get("i")
        if t == "loaded":
            j.loaded = True
            phase_deadline_reset()
        elif t == "load_error":
            j.load_error = (msg.get("err"), msg.get("msg", ""))
        elif t == "test_error":
            j.test_error = msg.get("msg", "")
        elif t == "start":
            if i != j.started + 1 or not j.loaded:
                j.kill_reason, j.detail = "protocol", "tests out of order"
                return
            j.started = i
            phase_deadline_reset()
        elif t in ("res", "out"):
            if i != j.started or i in j.outcomes:
                j.kill_reason, j.detail = "protocol", "result out of order"
                return
            if msg.get("too_big"):
                j.outcomes[i] = (False, "OutputLimit")
            elif t == "res":
                j.outcomes[i] = (msg.get("ok") is True and trusted, msg.get("err") or "")
                if msg.get("msg") and not j.detail:
                    j.detail = "test %d: %s" % (i, msg.get("msg"))
            else:
                exit_ok = msg.get("exit") == 0 and msg.get("sig") == 0
                data = msg.get("data")
                ok = not trusted and kind == "stdio" and exit_ok and isinstance(data, str) and stdout_matches(data, expected[i])
                reason = ""
                if not ok:
                    reason = "WrongAnswer" if exit_ok else ("Signal%d" % msg.get("sig") if msg.get("sig") else "NonZeroExit")
                    if msg.get("sig") == signal.SIGKILL:
                        reason = "MemoryError"
                    elif msg.get("sig") == signal.SIGXCPU:
                        reason = "Timeout"
                    elif msg.get("exit") == 137:
                        reason = "MemoryError"
                j.outcomes[i] = (ok, reason)
        elif t == "end":
            j.ended = True
        else:
            j.kill_reason, j.detail = "protocol", "unknown message"

    def phase_deadline_reset():
        nonlocal phase_deadline, phase_credit_base
        phase_deadline = time.monotonic() + test_timeout
        phase_credit_base = starve.seconds

    # Time limits are wall-clock, but time the processes spent waiting for a CPU (a loaded host)
    # is not the candidate's: it is credited back (StarveCredit: only while the candidate runs
    # alone, one thread and no children), up to STARVE_CREDIT_MAX x the total limit.
    # Past that the run is a sandbox_error (the infrastructure's failure, retried elsewhere), never
    # a timeout verdict. A sleeping or blocked candidate waits on no run queue and gets no credit.
    starve = StarveCredit(proc.pid, [proc.judge_pid] if trusted and proc.judge_pid else [])
    phase_credit_base = 0.0
    credit_cap = STARVE_CREDIT_MAX * limits["total_timeout_ms"] / 1000.0
    def credited_deadline(credit):
        # The run's credit extends the total limit; what accrued in this phase extends the phase's.
        return min(total_deadline + min(credit, credit_cap), phase_deadline + min(credit - phase_credit_base, credit_cap))

    while not (j.ended or j.kill_reason or j.load_error or j.test_error):
        now = time.monotonic()
        credit = starve.seconds
        deadline = credited_deadline(credit)
        if now >= deadline or starve.due(now):
            credit = starve.update()  # a deadline is only ever decided on a fresh sample
            deadline = credited_deadline(credit)
        if now >= deadline:
            if credit >= credit_cap:
                j.kill_reason = "starved"
                j.detail = "the host starved the sandbox of CPU (its processes waited %.1f s for a CPU); not the candidate's time" % credit
            else:
                j.kill_reason = "timeout"
            break
        events = sel.select(min(deadline - now, STARVE_SAMPLE_S))
        for key, _ in events:
            what = key.data
            if what == "exit":
                runner_exited = True
                sel.unregister(key.fd)
                continue
            try:
                chunk = os.read(key.fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(key.fd)
                if what == "result":
                    runner_exited = True  # nothing more can be reported
                continue
            if what == "result":
                result_bytes += len(chunk)
                if result_bytes > MAX_RESULT_STREAM_BYTES:
                    j.kill_reason, j.detail = "protocol", "result stream too large"
                    break
                result_buf += chunk
                while b"\n" in result_buf:
                    line, _, rest = bytes(result_buf).partition(b"\n")
                    result_buf = bytearray(rest)
                    try:
                        handle(json.loads(line))
                    except (ValueError, TypeError, IndexError, KeyError):
                        j.kill_reason, j.detail = "protocol", "malformed message"
                    if j.kill_reason or j.ended:
                        break
            else:
                out_bytes += len(chunk)
                if what == "err":
                    stderr_tail += chunk
                    del stderr_tail[:-STDERR_TAIL_BYTES]
                if out_bytes > out_cap:
                    j.kill_reason, j.detail = "output_limit", "output over %d bytes" % out_cap
                    break
        if runner_exited and not (j.ended or j.kill_reason or j.load_error or j.test_error):
            # Drain what is already in the result pipe, then stop waiting.
            _drain_results(proc.jresult_r if trusted else proc.result_r, result_buf, handle, j)
            if not (j.ended or j.kill_reason or j.load_error or j.test_error):
                j.detail = j.detail or "runner exited before all tests ran"
            break
    sel.close()
    if exit_signals is None:
        j.candidate_signal = _runner_signal(proc.pid, j)
        judge_signal = _runner_signal(proc.judge_pid, j) if trusted else 0
    else:
        j.candidate_signal, judge_signal = exit_signals(j)
        if not trusted:
            judge_signal = 0
    j.exit_signal = j.candidate_signal or judge_signal
    if oom_before is not None:
        after = oom_kills()
        j.oom_killed = after is not None and after > oom_before
    return j, stderr_tail, int((time.monotonic() - started) * 1000)


def _drain_results(fd, buf, handle, j):
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            buf += chunk
    finally:
        pass
    for line in bytes(buf).split(b"\n")[:-1]:
        if j.kill_reason or j.ended:
            break
        try:
            handle(json.loads(line))
        except (ValueError, TypeError, IndexError, KeyError):
            j.kill_reason = "protocol"


_OOM_COUNTERS = (("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"), ("/sys/fs/cgroup/memory.events", "oom_kill"))


def oom_kills():
    """The container cgroup's OOM-kill counter (cgroup v1 or v2), or None when unreadable."""
    for path, key in _OOM_COUNTERS:
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def _runner_signal(pid, j):
    """Signal that ended the runner, if it already ended on its own (0 otherwise)."""
    try:
        wpid, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    if wpid == pid and os.WIFSIGNALED(status):
        return os.WTERMSIG(status)
    return 0


def _death_status(j):
    """Status when the candidate process died under the judge (reported by the judge)."""
    if j.candidate_signal == signal.SIGKILL and j.oom_killed is not False:
        return "memory"
    if j.candidate_signal == signal.SIGXCPU:
        return "timeout"
    return "runtime_error"


def verdict(j):
    """Maps a judgement to (status, tests_run, tests_passed)."""
    run = len(j.outcomes)
    passed = sum(1 for ok, _ in j.outcomes.values() if ok)
    if j.total > 0 and j.ended and passed == j.total and run == j.total and not j.kill_reason:
        return "passed", run, passed
    if j.kill_reason == "timeout":
        return "timeout", run, passed
    if j.kill_reason == "starved":
        return "sandbox_error", run, passed
    if j.kill_reason in ("output_limit",):
        return "runtime_error", run, passed
    if j.kill_reason == "protocol":
        return "failed", run, passed
    if j.load_error:
        if j.load_error[0] == "CandidateDied":
            return _death_status(j), run, passed
        return ("memory" if j.load_error[0] == "MemoryError" else "runtime_error"), run, passed
    if j.test_error:
        return "runtime_error", run, passed
    for i in range(j.total):
        ok, reason = j.outcomes.get(i, (False, None))
        if ok:
            continue
        if reason is None:
            break  # not run: the runner died; decided below
        if reason in ("AssertionError", "NotPlainData", "WrongAnswer", "ProtocolError", ""):
            return "failed", run, passed
        if reason == "CandidateDied":
            return _death_status(j), run, passed
        if reason == "MemoryError":
            return "memory", run, passed
        if reason == "Timeout":
            return "timeout", run, passed
        return "runtime_error", run, passed
    if j.exit_signal == signal.SIGKILL and j.oom_killed is not False:
        return "memory", run, passed  # the OOM killer (or unknown: no cgroup counter)
    if j.exit_signal == signal.SIGXCPU:
        return "timeout", run, passed
    if j.total == 0:
        return "failed", run, passed
    return "runtime_error", run, passed


# ---------------------------------------------------------------- cleanup

def kill_all_as_init():
    """Kills every other process in the pid namespace and reaps until none is left."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def kill_session(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _force_remove(path):
    def onerror(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, onerror=None)
        else:
            os.unlink(p)

    if os.path.isdir(path) and not os.path.islink(path):
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
        shutil.rmtree(path, onerror=onerror)
    else:
        os.unlink(path)


_SYSV_IPC = (("/proc/sysvipc/shm", "shmctl"), ("/proc/sysvipc/msg", "msgctl"), ("/proc/sysvipc/sem", "semctl"))
IPC_RMID = 0


def wipe_sysv_ipc():
    """Removes every SysV shared-memory segment, message queue and semaphore set of this IPC
    namespace (the sandbox's own; they are the candidate's, same uid). Docker's sandbox forbids
    queues and semaphores and forces segment removal by sysctl; bwrap cannot set those sysctls."""
    import ctypes
    libc = None
    for path, fn in _SYSV_IPC:
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 2:
                continue
            if libc is None:
                libc = ctypes.CDLL(None, use_errno=True)
            ipc_id = int(fields[1])
            if fn == "semctl":
                libc.semctl(ipc_id, 0, IPC_RMID)
            else:
                getattr(libc, fn)(ipc_id, IPC_RMID, None)


def wipe(root):
    """Empties a directory the candidate could write to; raises if something stays."""
    if not os.path.isdir(root):
        return
    for entry in os.listdir(root):
        _force_remove(os.path.join(root, entry))
    left = os.listdir(root)
    if left:
        raise OSError("could not wipe %s: %r" % (root, left[:5]))


# ---------------------------------------------------------------- main loops

def _ignore_signals():
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            continue
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError, RuntimeError):
            pass


def _validate(req):
    if not isinstance(req, dict) or not isinstance(req.get("code"), str):
        raise ValueError("request needs a string 'code'")
    if not isinstance(req.get("tests"), dict) or not isinstance(req.get("limits"), dict):
        raise ValueError("request needs 'tests' and 'limits' objects")
    for key in ("test_timeout_ms", "total_timeout_ms", "memory_mb", "file_size_mb", "max_open_files",
                "output_limit_bytes"):
        if not isinstance(req["limits"].get(key), (int, float)):
            raise ValueError("limits.%s must be a number" % key)


def respond(req, j, stderr_tail, duration_ms):
    status, run, passed = verdict(j)
    return {
        "id": req.get("id"),
        "status": status,
        "tests_run": run,
        "tests_passed": passed,
        "tests_total": j.total,
        "duration_ms": duration_ms,
        "stderr_tail": stderr_tail.decode("utf-8", "replace"),
        "detail": (j.detail or (j.load_error[1] if j.load_error else "") or (j.test_error or ""))[:500],
    }


EXIT_EOF = 10
EXIT_PID1_GONE = 11
SUPERVISOR_GRACE_S = 2.5  # after the request's own budget; the executor's watchdog allows 5 s


def _bad_request(req, exc):
    return {"id": req.get("id") if isinstance(req, dict) else None, "status": "sandbox_error",
            "tests_run": 0, "tests_passed": 0, "tests_total": 0, "duration_ms": 0,
            "stderr_tail": "", "detail": "bad request: %s" % exc}


# ---------------------------------------------------------------- PID 1 and the supervisor
#
# PID 1 is the zygote: it never reads a request. It forks, once, a persistent *supervisor* that
# reads the requests and judges them, and per request forks the candidate process and the judge
# process from its own clean warm interpreter and hands the supervisor its ends of their pipes
# and their pidfds over a private socket (SCM_RIGHTS). So no process a candidate or a test runs
# in was forked from memory that ever held test code or expected values (the supervisor's heap
# keeps freed request bytes, and nothing is ever forked from it), and a request costs two forks,
# not three. Messages on that socket (JSON, one per packet):
#   supervisor -> PID 1: next (ready for a pair) | header {id, total, deadline_s} | finish
#   PID 1 -> supervisor: pair {pid, judge_pid, run_dir, fds} + descriptors | clean {c, j}
# On `finish` PID 1 takes the exit signals of the pair (if they ended on their own), kills every
# process but itself and the supervisor, reaps them all, and answers `clean` with the signals;
# the supervisor then empties the tmpfs and SysV IPC and answers the executor. If a candidate
# kills or stops the supervisor, PID 1 answers for it (runtime_error / timeout) after killing
# everything, and forks a fresh supervisor.

def _send(sock, msg):
    sock.sendall(json.dumps(msg, separators=(",", ":")).encode())


def _recv(sock):
    """One message and the descriptors that came with it; (None, []) when the peer is gone."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 16)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


def _finish(sock, judge_done=False):
    """Asks PID 1 to end the pair and every process the candidate left; returns the pair's own
    exit signals (candidate, judge), 0 for a process that was still running."""
    _send(sock, {"t": "finish", "judge_done": judge_done})
    msg, fds = _recv(sock)
    for fd in fds:
        os.close(fd)
    if not isinstance(msg, dict) or msg.get("t") != "clean":
        raise SystemExit(EXIT_PID1_GONE)
    return int(msg.get("c") or 0), int(msg.get("j") or 0)


def _supervise_request(sock, proc):
    """One request on the pair PID 1 forked; (response or None, exit code or None)."""
    try:
        req = read_frame(0)
    except ValueError as exc:
        proc.close_fds()
        _finish(sock)
        return _bad_request(None, exc), None
    if req is None:
        proc.close_fds()
        return None, EXIT_EOF
    signals = None

    def exit_signals(j):
        nonlocal signals
        # The judge process may serve the next run only if this one ended cleanly.
        signals = _finish(sock, judge_done=j.ended and not (j.kill_reason or j.load_error or j.test_error))
        return signals

    try:
        _validate(req)
        _send(sock, {"t": "header", "id": req.get("id"), "total": _total_tests(req),
                     "deadline_s": req["limits"]["total_timeout_ms"] / 1000.0 + SUPERVISOR_GRACE_S})
        j, tail, ms = judge(req, proc, in_container=True, exit_signals=exit_signals)
        resp = respond(req, j, tail, ms)
    except (ValueError, KeyError, TypeError) as exc:
        resp = _bad_request(req, exc)
    proc.close_fds()
    if signals is None:
        _finish(sock)
    return resp, None


def supervisor_loop(sock, run_dir):
    """The persistent supervisor (a child of PID 1); returns its exit code.

    Per request: a fresh run dir, `next` to PID 1, the pair's descriptors back, then the request
    from stdin, judged; PID 1 kills and reaps everything else (`finish`), the tmpfs and SysV IPC
    are emptied, and only then the response goes to stdout.
    """
    while True:
        try:
            os.mkdir(run_dir, 0o700)
        except FileExistsError:
            pass
        _send(sock, {"t": "next"})
        msg, fds = _recv(sock)
        if not isinstance(msg, dict) or msg.get("t") != "pair":
            for fd in fds:
                os.close(fd)
            return EXIT_PID1_GONE
        proc = Runner.received(msg, fds)
        resp, code = _supervise_request(sock, proc)
        if code is not None:
            return code
        for root in WIPE_ROOTS:
            wipe(root)
        wipe_sysv_ipc()
        write_frame(1, resp)


JUDGE_RUNS = 64  # runs one judge process serves at most before a fresh one is forked
JUDGE_READY_S = 0.5  # how long PID 1 waits for a judge that reported its end to say it is idle


JUDGE_REUSE_MAX_GROWTH_KB = 64 * 1024


def _vm_size_kb():
    """This process's virtual memory size in KiB (/proc/self/status VmSize), None if unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def judge_server(sock, run_dir):
    """A judge process that serves run after run (forked by PID 1, never by the supervisor).

    Per run PID 1 sends it the run's pipes (job, results, the channel to the candidate, the
    candidate's pidfd); it judges exactly as a fresh judge process would, then drops everything
    of the run (its channel is marked dead so a kept handle refers to nothing, `solution` leaves
    sys.modules, its fds close, the working directory is left) and says `ready`. PID 1 keeps it
    only when the run ended cleanly and that `ready` came; otherwise it is killed with the
    candidate. SIGXCPU ends it (its CPU limit is a soft one, see judge_limits).
    """
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    import builtins
    import threading
    import gc
    clean = {"bdict": vars(builtins), "builtins": dict(vars(builtins)), "path": list(sys.path), "recursion": sys.getrecursionlimit(),
             "std": (sys.stdin, sys.stdout, sys.stderr),
             "signals": {n: signal.getsignal(n) for n in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)},
             "vmsize": _vm_size_kb()}
    # Everything this process holds before its first run goes to the collector's permanent
    # generation: the per-run gc.collect() below then walks only what runs allocated (walking
    # the harness's own ~10^5 objects took ~3 ms of the judge's CPU per run, most of its share).
    gc.collect()
    gc.freeze()
    # The collector's state a run's test code may change (gc.disable/set_threshold/set_debug,
    # gc.callbacks, gc.freeze/unfreeze), as it is now; a judge whose state differs after a run
    # serves no other run. Read through functions taken now: a run may replace gc's attributes.
    # gc.get_freeze_count() walks every frozen object (~1 ms here), so freeze and unfreeze are
    # counted by wrappers instead; a run that replaced a wrapper changed the state too.
    gc_state = (gc.isenabled, gc.get_threshold, gc.get_debug)
    gc_callbacks = gc.callbacks
    freezes = []

    def counted(real):
        def wrapper():
            freezes.append(real)
            return real()
        wrapper.__name__, wrapper.__doc__ = real.__name__, real.__doc__
        return wrapper

    gc.freeze, gc.unfreeze = counted(gc.freeze), counted(gc.unfreeze)
    wrappers = (gc.freeze, gc.unfreeze)

    def gc_now():
        return tuple(f() for f in gc_state) + (tuple(map(id, gc_callbacks)), len(freezes), gc.freeze is wrappers[0] and gc.unfreeze is wrappers[1])

    clean["gc"] = gc_now()
    while True:
        msg, fds = _recv(sock)
        if not isinstance(msg, dict) or msg.get("t") != "job" or len(fds) < 4:
            return
        jjob_r, jresult_w, c2j_r, j2c_w = fds[:4]
        cand_pidfd = fds[4] if len(fds) > 4 else None
        try:
            spec = read_frame(jjob_r)
            os.close(jjob_r)
            if spec is None:
                return
            judge_limits(spec["limits"], run_dir, persistent=True)
            reporter = runner.Reporter(jresult_w, spec["nonce"])
            try:
                judge_process.run(spec, reporter, judge_process.Channel(c2j_r, j2c_w, cand_pidfd))
            except BaseException as exc:  # a harness bug: fail the run, say where
                reporter.send("test_error", msg="judge: " + judge_process._short(exc))
            del spec, reporter
        finally:
            judge_process.end_run()
            for fd in fds[1:]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            os.chdir("/")
            # What a run's test code may have changed that the next run's would see.
            bdict = clean["bdict"]
            bdict.clear()  # (no builtin can be looked up from here until the update)
            bdict.update(clean["builtins"])
            sys.path[:] = clean["path"]
            sys.setrecursionlimit(clean["recursion"])
            sys.stdin, sys.stdout, sys.stderr = clean["std"]
            # Timers and handlers a run's test code set (APPS-style alarms) end with the run.
            signal.setitimer(signal.ITIMER_REAL, 0)
            for n, h in clean["signals"].items():
                try:
                    signal.signal(n, h)
                except (OSError, ValueError, TypeError):
                    pass
            # What a run left in memory (cycles, large replies) is freed now, so it cannot count
            # against the next run's memory limit; a process that still holds much more than it
            # started with serves no other run.
            gc.collect()
        if threading.active_count() > 1:
            return  # a thread of the run still runs: this process serves no other run
        # The run changed the collector's state (disabled it, thresholds, debug flags, callbacks,
        # froze or unfroze objects, replaced freeze/unfreeze): this process serves no other run.
        if gc_now() != clean["gc"]:
            return
        vm = _vm_size_kb()
        if vm is None or clean["vmsize"] is None or vm > clean["vmsize"] + JUDGE_REUSE_MAX_GROWTH_KB:
            return
        _send(sock, {"t": "ready"})


def _spawn_judge(run_dir):
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        _child({theirs.fileno()}, None, None, lambda: judge_server(theirs, run_dir))
    theirs.close()
    return {"pid": pid, "sock": mine, "runs": 0}


def _judge_idle(judge_server_, judge_done):
    """True when the judge process may serve the next run: the run ended cleanly, it said
    `ready` in time, it is alive, and it has not served JUDGE_RUNS runs yet."""
    if not judge_done or judge_server_["runs"] >= JUDGE_RUNS:
        return False
    sock = judge_server_["sock"]
    ready, _, _ = select.select([sock], [], [], JUDGE_READY_S)
    if not ready:
        return False
    msg, fds = _recv(sock)
    for fd in fds:
        os.close(fd)
    return isinstance(msg, dict) and msg.get("t") == "ready"


def _spawn_supervisor(run_dir):
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            mine.close()
            code = supervisor_loop(theirs, run_dir)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 3
        finally:
            os._exit(code)
    theirs.close()
    return pid, mine


def _pair_signal(pid, reaped):
    """The signal that ended a process of the pair on its own (it is reaped, and added to
    `reaped`), else 0."""
    try:
        wpid, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    if wpid == pid:
        reaped.add(pid)
        if os.WIFSIGNALED(status):
            return os.WTERMSIG(status)
    return 0


def _judge_alive_after(pid):
    """After every other process is gone: a stop the candidate sent the kept judge process is
    undone (SIGCONT also discards a pending SIGSTOP); False if it is not alive any more."""
    try:
        os.kill(pid, signal.SIGCONT)
        wpid, _ = os.waitpid(pid, os.WNOHANG)
    except (ProcessLookupError, ChildProcessError):
        return False
    if wpid == pid:
        return False
    return True


def kill_all_but(spare, spare_judge=None, children=()):
    """As PID 1: kills every process of the namespace except itself, `spare` (the supervisor)
    and `spare_judge` (a judge process kept for the next run), reaping until none is left.
    `children` are pids of PID 1's own children among them (the pair it forked): each is waited
    for as soon as it is killed, so the usual run (nothing else left) needs no second pass.
    Returns the supervisor's wait status if it ended meanwhile, else None."""
    spare_status = None
    keep = (1, spare, spare_judge)
    while True:
        others = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in keep]
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reaped = False
        for pid in others:
            if pid in children:
                try:
                    os.waitpid(pid, 0)  # SIGKILLed just now: returns once it is gone
                    reaped = True
                except ChildProcessError:
                    pass
        while True:
            try:
                wpid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if wpid == 0:
                break
            reaped = True
            if wpid == spare:
                spare_status = status
        if not others:
            return spare_status
        if not reaped:
            select.select([], [], [], 0.0002)


def _await_supervisor(sock, spid, deadline, state):
    """The supervisor's next message, ("exit", status) when it ended, or ("deadline", None).
    A supervisor a candidate stopped is continued."""
    while True:
        wpid, status = os.waitpid(spid, os.WNOHANG | os.WUNTRACED)
        if wpid == spid:
            if os.WIFSTOPPED(status):
                os.kill(spid, signal.SIGCONT)
                continue
            return "exit", status
        left = deadline - time.monotonic() if deadline is not None else 0.05
        if left <= 0:
            return "deadline", None
        waits = [state["pidfd"]] + ([] if state["sock_eof"] else [sock])
        ready, _, _ = select.select(waits, [], [], min(left, 0.05))
        if sock in ready:
            msg, fds = _recv(sock)
            for fd in fds:
                os.close(fd)
            if msg is None:
                state["sock_eof"] = True
                continue
            return "msg", msg


def _serve_with_supervisor(run_dir):
    """Serves requests through one supervisor until it ends; False on stdin EOF."""
    spid, sock = _spawn_supervisor(run_dir)
    state = {"pidfd": os.pidfd_open(spid), "sock_eof": False}
    header, started, proc = None, 0.0, None
    judge = None  # the judge process kept from the last clean run
    try:
        while True:
            deadline = started + header["deadline_s"] if header is not None else None
            kind, value = _await_supervisor(sock, spid, deadline, state)
            if kind == "msg" and isinstance(value, dict):
                t = value.get("t")
                if t == "next":
                    if judge is None:
                        judge = _spawn_judge(run_dir)
                    judge["runs"] += 1
                    proc = Runner(run_dir, new_session=False, judge_server=judge)
                    msg, fds = proc.handoff()
                    msg["t"] = "pair"
                    socket.send_fds(sock, [json.dumps(msg, separators=(",", ":")).encode()], fds)
                    proc.close_fds()  # PID 1 keeps no descriptor of the pair
                    header = None
                    continue
                if t == "header" and isinstance(value.get("deadline_s"), (int, float)):
                    header, started = value, time.monotonic()
                    continue
                if t == "finish" and proc is not None:
                    reaped = set()
                    sigs = {"c": _pair_signal(proc.pid, reaped), "j": _pair_signal(proc.judge_pid, reaped)}
                    keep = judge is not None and not sigs["j"] and _judge_idle(judge, value.get("judge_done") is True)
                    if not keep and judge is not None:
                        judge["sock"].close()
                        judge = None
                    ended = kill_all_but(spid, judge["pid"] if keep else None, {proc.pid, proc.judge_pid} - reaped)
                    if keep and not _judge_alive_after(judge["pid"]):
                        judge["sock"].close()
                        judge = None
                    header, proc = None, None
                    if ended is None:
                        _send(sock, dict(sigs, t="clean"))
                        continue
                    kind, value = "exit", ended
            # The supervisor ended, sent nonsense, or ran past the request's deadline.
            kill_all_as_init()
            if kind == "exit" and os.WIFEXITED(value) and os.WEXITSTATUS(value) == EXIT_EOF and header is None:
                return False
            for root in WIPE_ROOTS:
                wipe(root)
            wipe_sysv_ipc()
            if header is not None:
                # The candidate killed (or stopped) the supervisor: no test result can exist;
                # answer for it, once every process is gone.
                write_frame(1, {"id": header.get("id"), "status": "timeout" if kind == "deadline" else "runtime_error",
                                "tests_run": 0, "tests_passed": 0, "tests_total": header.get("total", 0),
                                "duration_ms": int((time.monotonic() - started) * 1000), "stderr_tail": "",
                                "detail": "the judge's supervisor was %s" % ("stopped" if kind == "deadline" else "killed")})
            return True
    finally:
        os.close(state["pidfd"])
        sock.close()
        if judge is not None:
            judge["sock"].close()


def _set_nproc(argv):
    """--nproc N: RLIMIT_NPROC for every process of the sandbox (bwrap without a pids cgroup).
    Counted per user namespace, so it bounds this sandbox's processes only."""
    if "--nproc" not in argv:
        return
    import resource
    n = int(argv[argv.index("--nproc") + 1])
    resource.setrlimit(resource.RLIMIT_NPROC, (n, n))


def serve_as_init():
    _set_nproc(sys.argv)
    _set_not_dumpable()
    _ignore_signals()
    os.umask(0o077)
    run_dir = "/tmp/run"
    runner.prepare_environ(run_dir)  # inherited by every candidate forked from here
    # The warm interpreter's objects move to the collector's permanent generation before anything
    # is forked: a collection in a forked process (the judge's per-run one, a candidate's) then
    # never walks them, so it neither spends CPU on them nor writes to (copies) their pages.
    gc.collect()
    gc.freeze()
    write_frame(1, {"ready": True, "protocol": PROTOCOL_VERSION, "pid": os.getpid()})
    while _serve_with_supervisor(run_dir):
        pass
    return 0


def serve_once():
    """One request from stdin, one response to stdout; no PID-1 powers (used unsandboxed)."""
    import tempfile  # only here: it imports random, whose after-fork hook would run in every fork
    run_dir = tempfile.mkdtemp(prefix="rlmesh-run-")
    try:
        # Forked before the request is read, as in the container: the candidate process never
        # has the request (tests, expected values) in its memory.
        proc = Runner(run_dir, new_session=True)
        req = read_frame(0)
        if req is None:
            return 1
        _validate(req)
        try:
            j, tail, ms = judge(req, proc)
        finally:
            proc.close_fds()
            kill_session(proc.pid)
            kill_session(proc.judge_pid)
        write_frame(1, respond(req, j, tail, ms))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def main():
    if "--once" in sys.argv:
        return serve_once()
    if os.getpid() != 1:
        print("fork_server: refusing to serve: not PID 1 (use --once outside a sandbox)", file=sys.stderr)
        return 2
    return serve_as_init()


if __name__ == "__main__":
    sys.exit(main())
