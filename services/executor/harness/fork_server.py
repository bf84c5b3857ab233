"""Fork server and judge: PID 1 of a sandbox container (or a one-shot judge with --once).

Protocol on stdin/stdout: frames of a 4-byte big-endian length + UTF-8 JSON. On start it writes
{"ready": true}; then for each request {id, code, tests, limits} it writes one response
{id, status, tests_run, tests_passed, tests_total, duration_ms, stderr_tail, detail}.

Per request a pre-forked runner (see runner.py) loads the candidate and runs the tests; this
process judges. Why this is safe as PID 1 of the container's pid namespace:
  - SIGKILL/SIGSTOP from inside the namespace do not reach PID 1, and every other signal is
    ignored here, so a candidate cannot kill the judge;
  - PR_SET_DUMPABLE=0 makes /proc/1/{mem,fd,environ} unreadable for the same-uid candidate, so
    it cannot write to the judge's stdout (the response channel) nor read the judge's memory;
  - expected values of call/stdio tests never enter the runner's memory;
  - after each request kill(-1, SIGKILL) and reaping until no child is left removes every
    process the candidate started, and the tmpfs (/tmp, /dev/shm) is wiped.
"""

import gc
import json
import math
import os
import selectors
import shutil
import signal
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import runner  # noqa: E402  (pre-imported so a fork starts with the harness loaded)

PROTOCOL_VERSION = 1
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


def values_match(actual, expected):
    """Plain JSON data equality; floats within tolerance; bool is never equal to a number."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        if isinstance(actual, float) or isinstance(expected, float):
            return math.isclose(actual, expected, rel_tol=FLOAT_REL_TOL, abs_tol=FLOAT_ABS_TOL)
        return actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(values_match(x, y) for x, y in zip(actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(values_match(actual[k], expected[k]) for k in actual)
    return type(actual) is type(expected) and actual == expected


# ---------------------------------------------------------------- runner process

def _close_all_except(keep):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


class Runner:
    """A forked runner waiting for its job; created before the request is read."""

    def __init__(self, run_dir, new_session):
        job_r, self.job_w = os.pipe()
        self.result_r, result_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.run_dir = run_dir
        pid = os.fork()
        if pid == 0:
            try:
                # First thing: the judge's stdin/stdout (the request/response channel) must
                # never be reachable from candidate code.
                devnull = os.open("/dev/null", os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                _close_all_except({0, 1, 2, job_r, result_w})
                if new_session:
                    os.setsid()
                spec = read_frame(job_r)
                os.close(job_r)
                if spec is None:
                    os._exit(0)
                runner.apply_limits(spec["limits"], run_dir)
                runner.run_job(spec, result_w)
                os._exit(0)
            except BaseException:
                os._exit(3)
            finally:
                os._exit(4)
        self.pid = pid
        for fd in (job_r, result_w, out_w, err_w):
            os.close(fd)
        try:
            self.pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None

    def close_fds(self):
        for fd in (self.job_w, self.result_r, self.out_r, self.err_r, self.pidfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


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
        self.kill_reason = None  # timeout | output_limit | protocol
        self.exit_signal = 0
        self.oom_killed = None  # True/False when the cgroup counter is readable
        self.detail = ""


def _runner_spec(req, nonce, output_cap):
    tests = req["tests"]
    kind = tests["kind"]
    spec = {"nonce": nonce, "kind": kind, "code": req["code"], "limits": req["limits"]}
    if kind == "assert":
        spec.update(setup=tests.get("setup", ""), tests=tests["tests"], entry_point=tests.get("entry_point"))
    elif kind == "call":
        spec.update(fn=tests["fn"], args=[c["args"] for c in tests["cases"]])
    elif kind == "stdio":
        spec.update(inputs=[c["input"] for c in tests["cases"]], output_cap=output_cap)
    else:
        raise ValueError("unknown test kind %r" % kind)
    return spec


def _expected(req):
    tests = req["tests"]
    kind = tests["kind"]
    if kind == "call":
        return [c["expected"] for c in tests["cases"]]
    if kind == "stdio":
        return [c["output"] for c in tests["cases"]]
    return None


def _total_tests(req):
    tests = req["tests"]
    return len(tests["tests"]) if tests["kind"] == "assert" else len(tests["cases"])


def judge(req, proc):
    limits = req["limits"]
    started = time.monotonic()
    total_deadline = started + limits["total_timeout_ms"] / 1000.0
    test_timeout = limits["test_timeout_ms"] / 1000.0
    out_cap = int(limits["output_limit_bytes"])
    nonce = os.urandom(16).hex()
    expected = _expected(req)
    kind = req["tests"]["kind"]
    j = Judgement(_total_tests(req))
    oom_before = oom_kills() if os.getpid() == 1 else None
    stdio_cap = out_cap
    if expected is not None and kind == "stdio":
        stdio_cap = max(out_cap, 2 * max((len(e) for e in expected), default=0) + 1024)
    write_frame(proc.job_w, _runner_spec(req, nonce, stdio_cap))
    os.close(proc.job_w)
    proc.job_w = None

    sel = selectors.DefaultSelector()
    sel.register(proc.result_r, selectors.EVENT_READ, "result")
    sel.register(proc.out_r, selectors.EVENT_READ, "out")
    sel.register(proc.err_r, selectors.EVENT_READ, "err")
    if proc.pidfd is not None:
        sel.register(proc.pidfd, selectors.EVENT_READ, "exit")
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
        elif t in ("res", "ret", "out"):
            if i != j.started or i in j.outcomes:
                j.kill_reason, j.detail = "protocol", "result out of order"
                return
            if msg.get("too_big"):
                j.outcomes[i] = (False, "OutputLimit")
            elif t == "res":
                j.outcomes[i] = (msg.get("ok") is True and kind == "assert", msg.get("err") or "")
                if msg.get("msg") and not j.detail:
                    j.detail = "test %d: %s" % (i, msg.get("msg"))
            elif t == "ret":
                ok = kind == "call" and values_match(msg.get("v"), expected[i])
                j.outcomes[i] = (ok, "" if ok else "WrongAnswer")
            else:
                exit_ok = msg.get("exit") == 0 and msg.get("sig") == 0
                data = msg.get("data")
                ok = kind == "stdio" and exit_ok and isinstance(data, str) and stdout_matches(data, expected[i])
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
        nonlocal phase_deadline
        phase_deadline = time.monotonic() + test_timeout

    while not (j.ended or j.kill_reason or j.load_error or j.test_error):
        now = time.monotonic()
        deadline = min(total_deadline, phase_deadline)
        if now >= deadline:
            j.kill_reason = "timeout"
            break
        events = sel.select(deadline - now)
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
            _drain_results(proc.result_r, result_buf, handle, j)
            if not (j.ended or j.kill_reason or j.load_error or j.test_error):
                j.detail = j.detail or "runner exited before all tests ran"
            break
    sel.close()
    j.exit_signal = _runner_signal(proc.pid, j)
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


def verdict(j):
    """Maps a judgement to (status, tests_run, tests_passed)."""
    run = len(j.outcomes)
    passed = sum(1 for ok, _ in j.outcomes.values() if ok)
    if j.total > 0 and j.ended and passed == j.total and run == j.total and not j.kill_reason:
        return "passed", run, passed
    if j.kill_reason == "timeout":
        return "timeout", run, passed
    if j.kill_reason in ("output_limit",):
        return "runtime_error", run, passed
    if j.kill_reason == "protocol":
        return "failed", run, passed
    if j.load_error:
        return ("memory" if j.load_error[0] == "MemoryError" else "runtime_error"), run, passed
    if j.test_error:
        return "runtime_error", run, passed
    for i in range(j.total):
        ok, reason = j.outcomes.get(i, (False, None))
        if ok:
            continue
        if reason is None:
            break  # not run: the runner died; decided below
        if reason in ("AssertionError", "NotPlainData", "WrongAnswer", ""):
            return "failed", run, passed
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


def _serve_one(run_dir):
    """Forks the next runner, then reads and judges one request; False on stdin EOF."""
    os.mkdir(run_dir, 0o700)
    proc = Runner(run_dir, new_session=False)
    req = read_frame(0)
    if req is None:
        return False
    try:
        _validate(req)
        j, tail, ms = judge(req, proc)
        resp = respond(req, j, tail, ms)
    except (ValueError, KeyError, TypeError) as exc:
        resp = {"id": req.get("id") if isinstance(req, dict) else None, "status": "sandbox_error",
                "tests_run": 0, "tests_passed": 0, "tests_total": 0, "duration_ms": 0,
                "stderr_tail": "", "detail": "bad request: %s" % exc}
    proc.close_fds()
    kill_all_as_init()
    write_frame(1, resp)
    for root in WIPE_ROOTS:
        wipe(root)
    return True


def serve_as_init():
    _set_not_dumpable()
    _ignore_signals()
    os.umask(0o077)
    run_dir = "/tmp/run"
    write_frame(1, {"ready": True, "protocol": PROTOCOL_VERSION, "pid": os.getpid()})
    while _serve_one(run_dir):
        # The next runner is forked from this process: nothing of this request (code, tests,
        # expected outputs) may still be reachable in its memory.
        gc.collect()
    return 0


def serve_once():
    """One request from stdin, one response to stdout; no PID-1 powers (used unsandboxed)."""
    req = read_frame(0)
    if req is None:
        return 1
    _validate(req)
    run_dir = tempfile.mkdtemp(prefix="rlmesh-run-")
    try:
        proc = Runner(run_dir, new_session=True)
        j, tail, ms = judge(req, proc)
        proc.close_fds()
        kill_session(proc.pid)
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
