"""The runner: the forked process that loads a candidate program and runs its tests.

It reports over its own result pipe (never stdout, which the candidate controls), each message
carrying the per-run nonce. What it receives depends on the test kind, so that expected values
stay with the judge (the fork server) whenever possible:
  assert: candidate code + test code (the expected values are inside the asserts themselves);
  call:   candidate code + function name + arguments; it returns plain return values;
  stdio:  candidate code + inputs; each input runs in a fresh forked child, stdout goes back.
"""

import builtins
import json
import os
import resource
import signal
import sys

from assert_rewrite import ASSERT_NAME, CMP_NAME, TRUTH_NAME, rewrite_asserts
from plain_data import NotPlainData, compare_plain, to_plain, truth_plain

MAX_MESSAGE_BYTES = 1 << 20


class AssertFailed(Exception):
    pass


def _check_assert(ok, _fail=AssertFailed):
    if ok is not True:
        raise _fail()


class Reporter:
    def __init__(self, fd, nonce):
        self.fd = fd
        self.nonce = nonce

    def send(self, kind, **fields):
        fields["n"] = self.nonce
        fields["t"] = kind
        data = (json.dumps(fields, separators=(",", ":")) + "\n").encode()
        if len(data) > MAX_MESSAGE_BYTES:
            data = (json.dumps({"n": self.nonce, "t": kind, "i": fields.get("i"), "too_big": True}) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]


def _error_name(exc):
    if isinstance(exc, MemoryError):
        return "MemoryError"
    if isinstance(exc, NotPlainData):
        return "NotPlainData"
    if isinstance(exc, AssertFailed):
        return "AssertionError"
    return type(exc).__name__


PR_SET_DUMPABLE = 4


def raise_oom_score():
    """Makes this process (and what it forks) the OOM killer's first choice.

    Raising one's own score is allowed unprivileged, so the kernel picks a candidate, never the
    fork server, when the container's memory runs out. /proc/self is root-owned while the
    process is non-dumpable (inherited from the fork server), so dumpable is switched on for
    the write and off again; no candidate code runs in this process yet, and every process of
    the previous candidate is gone, so nothing can attach in between.
    """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    finally:
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            os._exit(5)


def apply_limits(limits, run_dir):
    """Resource limits and a clean process environment, set before any candidate code runs."""
    mem = int(limits["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(limits["total_timeout_ms"] / 1000) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    fsize = int(limits["file_size_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nofile = int(limits["max_open_files"])
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    raise_oom_score()
    os.environ.clear()
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": run_dir, "LANG": "C.UTF-8",
                       "TMPDIR": run_dir})
    os.chdir(run_dir)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _fresh_module_ns(name):
    return {"__name__": name, "__builtins__": builtins, "__doc__": None}


def _load(code_obj, reporter, name):
    """Executes the candidate program; returns its namespace or None after reporting why not."""
    ns = _fresh_module_ns(name)
    try:
        exec(code_obj, ns)
    except BaseException as exc:  # SystemExit too: exiting before the tests is not a pass
        reporter.send("load_error", err=_error_name(exc), msg=_short(exc))
        return None
    reporter.send("loaded")
    return ns


def _short(exc):
    try:
        return ("%s: %s" % (type(exc).__name__, exc))[:300]
    except BaseException:
        return type(exc).__name__


def _compile_candidate(code, reporter):
    try:
        return compile(code, "<solution>", "exec", dont_inherit=True)
    except BaseException as exc:
        reporter.send("load_error", err=_error_name(exc), msg=_short(exc))
        return None


def run_assert(spec, reporter):
    try:
        setup = rewrite_asserts(spec.get("setup") or "", "<test-setup>")
        tests = [rewrite_asserts(t, "<test-%d>" % i) for i, t in enumerate(spec["tests"])]
    except SyntaxError as exc:
        reporter.send("test_error", msg=_short(exc))
        return
    code_obj = _compile_candidate(spec["code"], reporter)
    if code_obj is None:
        return
    ns = _load(code_obj, reporter, "solution")
    if ns is None:
        return
    # Tests run in their own globals, with the checkers injected after the candidate ran, so
    # candidate code cannot rebind the checkers through its module globals.
    test_ns = dict(ns)
    test_ns.update({"__name__": "__rlmesh_tests__", ASSERT_NAME: _check_assert, CMP_NAME: compare_plain,
                    TRUTH_NAME: truth_plain})
    if spec.get("entry_point"):
        test_ns["entry_point"] = ns.get(spec["entry_point"])
    try:
        exec(setup, test_ns)
    except BaseException as exc:
        reporter.send("load_error", err=_error_name(exc), msg="test setup: " + _short(exc))
        return
    for i, test in enumerate(tests):
        reporter.send("start", i=i)
        try:
            exec(test, test_ns)
        except BaseException as exc:
            reporter.send("res", i=i, ok=False, err=_error_name(exc), msg=_short(exc))
            continue
        reporter.send("res", i=i, ok=True)
    reporter.send("end")


def _resolve_callable(ns, name):
    fn = ns.get(name)
    if callable(fn):
        return fn
    # LeetCode-style (LiveCodeBench functional): `class Solution` with the method.
    cls = ns.get("Solution")
    if cls is not None and callable(getattr(cls, name, None)):
        return getattr(cls(), name)
    return None


def _to_json_value(value):
    """Plain data as JSON-able data: tuples become lists, sets sorted lists where possible."""
    t = type(value)
    if t in (list, tuple) or t.__name__ == "deque":
        return [_to_json_value(v) for v in value]
    if t in (set, frozenset):
        items = [_to_json_value(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if t in (dict,) or t.__name__ == "OrderedDict":
        return {str(k) if not isinstance(k, str) else k: _to_json_value(v) for k, v in value.items()}
    if t is bytes:
        return value.decode("latin-1")
    if t is complex or t is range or t.__name__ == "Decimal":
        return str(value)
    return value


def run_call(spec, reporter):
    code_obj = _compile_candidate(spec["code"], reporter)
    if code_obj is None:
        return
    ns = _load(code_obj, reporter, "solution")
    if ns is None:
        return
    for i, args in enumerate(spec["args"]):
        reporter.send("start", i=i)
        try:
            fn = _resolve_callable(ns, spec["fn"])
            if fn is None:
                raise NameError("function %r is not defined" % spec["fn"])
            value = _to_json_value(to_plain(fn(*args)))
        except BaseException as exc:
            reporter.send("res", i=i, ok=False, err=_error_name(exc), msg=_short(exc))
            continue
        reporter.send("ret", i=i, v=value)
    reporter.send("end")


def run_stdio(spec, reporter, result_fd):
    code_obj = _compile_candidate(spec["code"], reporter)
    if code_obj is None:
        return
    reporter.send("loaded")
    cap = int(spec["output_cap"])
    for i, text in enumerate(spec["inputs"]):
        reporter.send("start", i=i)
        in_fd = os.memfd_create("stdin", 0)
        os.write(in_fd, text.encode())
        os.lseek(in_fd, 0, os.SEEK_SET)
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _stdio_child(code_obj, in_fd, out_w, (out_r, result_fd))
        os.close(in_fd)
        os.close(out_w)
        chunks, size, over = [], 0, False
        while True:
            chunk = os.read(out_r, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                over = True
                os.kill(pid, signal.SIGKILL)
                break
            chunks.append(chunk)
        os.close(out_r)
        _, status = os.waitpid(pid, 0)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        if over:
            reporter.send("res", i=i, ok=False, err="OutputLimit", msg="stdout over %d bytes" % cap)
            continue
        reporter.send("out", i=i, data=b"".join(chunks).decode("utf-8", "replace"), exit=code, sig=sig)
    reporter.send("end")


def _stdio_child(code_obj, in_fd, out_w, close_fds):
    """Runs the program once as __main__ with the test input on stdin; never returns."""
    try:
        for fd in close_fds:
            os.close(fd)
        os.dup2(in_fd, 0)
        os.dup2(out_w, 1)
        os.close(in_fd)
        os.close(out_w)
        exit_code = 0
        try:
            exec(code_obj, _fresh_module_ns("__main__"))
        except SystemExit as exc:
            exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except MemoryError:
            exit_code = 137
        except BaseException:
            import traceback
            traceback.print_exc()
            exit_code = 1
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        os._exit(exit_code & 0xFF)
    finally:
        os._exit(1)


def run_job(spec, result_fd):
    """Entry point inside the runner process once the job spec arrived."""
    reporter = Reporter(result_fd, spec["nonce"])
    kind = spec["kind"]
    if kind == "assert":
        run_assert(spec, reporter)
    elif kind == "call":
        run_call(spec, reporter)
    elif kind == "stdio":
        run_stdio(spec, reporter, result_fd)
    else:
        reporter.send("test_error", msg="unknown test kind %r" % kind)
