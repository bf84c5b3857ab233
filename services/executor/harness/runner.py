"""The candidate process: loads a candidate program and answers the judge's calls.

It is forked (warm) by the fork server before a request is read, so it never holds anything of
a request but what it is sent: the program, and then one call at a time.

Function-style tests (assert, HumanEval check, `from solution import f`, call): the candidate
process holds no nonce and no pipe to the fork server. It runs the program as module `solution`,
reports its global names to the judge process (judge.py), then serves requests from the judge on
a private pair of pipes until they close: call this handle with these arguments, get this
attribute, next() of this iterator, ... Each answer is plain data (plain_data.py) or, for any
other object, a numbered handle; the object itself never leaves this process. What the judge
sends is arguments only: never expected values, the test code, or its pipe to the fork server.

stdin/stdout tests: this process compiles the program and runs each case in a fresh forked
child with the input on stdin; it reports the child's stdout to the fork server, which judges.
Here the runner itself runs no candidate code, so it may hold the nonce and the result pipe.
"""

import builtins
import json
import os
import re
import resource
import signal
import _signal  # the C functions: see _DEFAULT_SIGNALS
import sys
import _thread  # not threading: its after-fork hook would run in every forked candidate
import types

from plain_data import (Decoder, Encoder, FrameReader, NotPlainData, ProtocolError, frame_bytes,
                        write_all)

MAX_MESSAGE_BYTES = 1 << 20  # stdio result messages to the fork server
MAX_REPLY_BYTES = 16 << 20  # one answer to the judge (the judge enforces the same cap)
MAX_REQUEST_BYTES = 256 << 20
MAX_HANDLES = 1 << 20
MAX_SCALAR_NAME_CHARS = 1000


class Reporter:
    """Messages to the fork server (stdio only), each tagged with the run's nonce."""

    def __init__(self, fd, nonce):
        self.fd = fd
        self.nonce = nonce

    def send(self, kind, **fields):
        fields["n"] = self.nonce
        fields["t"] = kind
        data = (json.dumps(fields, separators=(",", ":")) + "\n").encode()
        if len(data) > MAX_MESSAGE_BYTES:
            data = (json.dumps({"n": self.nonce, "t": kind, "i": fields.get("i"), "too_big": True}) + "\n").encode()
        write_all(self.fd, data)


def _error_name(exc):
    return "MemoryError" if isinstance(exc, MemoryError) else type(exc).__name__


def _short(exc):
    try:
        return ("%s: %s" % (type(exc).__name__, exc))[:300]
    except BaseException:
        return type(exc).__name__


def _fresh_module_ns(name):
    return {"__name__": name, "__builtins__": builtins, "__doc__": None}


def _compile(code):
    return compile(code, "<solution>", "exec", dont_inherit=True)


# ---------------------------------------------------------------- function-style tests

def builtin_exception_name(exc):
    """Name of the nearest builtin exception class of exc (a candidate class maps to its base)."""
    if isinstance(exc, NotPlainData):
        return "NotPlainData"
    for cls in type(exc).__mro__:
        name = getattr(cls, "__name__", None)
        if type(name) is str and getattr(builtins, name, None) is cls:
            return name
    return "Exception"


class JudgeFunction:
    """A function of the test code, known here only by number; calling it asks the judge.

    The judge runs it on plain-data copies of the arguments and sends back plain data, so the
    function object itself (and whatever it closes over) stays in the judge process.
    """

    __slots__ = ("_n", "_server")

    def __init__(self, n, server):
        object.__setattr__(self, "_n", n)
        object.__setattr__(self, "_server", server)

    def __call__(self, *args, **kwargs):
        return self._server.call_judge(self._n, args, kwargs)

    def __repr__(self):
        return "<test function #%d>" % self._n


class CandidateServer:
    """Answers the judge's requests about the loaded program (one request at a time)."""

    def __init__(self, rfd, wfd):
        self.reader = FrameReader(rfd, MAX_REQUEST_BYTES)
        self.wfd = wfd
        self.objects = []
        self.object_ids = {}
        self.seq = 0
        self.thread = _thread.get_ident()
        self.encode = Encoder(self._as_handle, self._special)
        self.decode = Decoder(handle=self._object, callback=lambda n: JudgeFunction(n, self),
                              builtin=self._builtin)

    # -- values
    def _as_handle(self, obj):
        n = self.object_ids.get(id(obj))
        if n is not None and self.objects[n] is obj:
            return {"h": n}
        if len(self.objects) >= MAX_HANDLES:
            raise NotPlainData("too many candidate objects")
        self.objects.append(obj)
        n = len(self.objects) - 1
        self.object_ids[id(obj)] = n
        return {"h": n}

    def _object(self, n):
        if 0 <= n < len(self.objects):
            return self.objects[n]
        raise ProtocolError("unknown handle %d" % n)

    @staticmethod
    def _builtin(name):
        obj = getattr(builtins, name, None)
        if obj is None or name.startswith("_"):
            raise NotPlainData("unknown builtin %r" % name)
        return obj

    def _special(self, v, t, depth):
        if isinstance(v, tuple) and isinstance(getattr(t, "_fields", None), tuple):
            # A namedtuple answers as the plain tuple of its fields (issue #23).
            return {"t": [self.encode(x, depth) for x in tuple.__iter__(v)]}
        if t is re.Match:
            n = len(v.groups())
            spans = [list(v.span(i)) for i in range(n + 1)]
            names = [[k, i] for k, i in v.re.groupindex.items()]
            return {"m": [self.encode(v.string, depth), spans, names]}
        if t is JudgeFunction:
            return {"cb": v._n}
        return NotImplemented

    def report_names(self, ns):
        names = []
        for name, value in list(ns.items()):
            if type(name) is not str or (name.startswith("__") and name.endswith("__")):
                continue
            t = type(value)
            if t is types.ModuleType:
                mod = getattr(value, "__name__", None)
                if type(mod) is str:
                    names.append([name, {"M": mod}])
                continue
            if t in (int, float, bool, type(None)) or (t is str and len(value) <= MAX_SCALAR_NAME_CHARS):
                names.append([name, self.encode(value)])
            else:
                names.append([name, self._as_handle(value)])
        return names

    # -- wire
    def send(self, msg):
        try:
            data = frame_bytes(msg, MAX_REPLY_BYTES)
        except NotPlainData as exc:
            data = frame_bytes({"r": msg.get("r"), "x": ["OutputLimit", str(exc)]}, MAX_REPLY_BYTES)
        write_all(self.wfd, data)

    def serve(self):
        """Serves requests until the judge closes the channel."""
        while True:
            msg = self.reader.read()
            if msg is None:
                return
            if "q" not in msg:
                raise ProtocolError("expected a request")
            self.handle(msg)

    def handle(self, msg):
        seq = msg.get("q")
        try:
            value = self.perform(msg)
            reply = {"r": seq, "v": self.encode(value)}
        except BaseException as exc:
            reply = {"r": seq, "x": [builtin_exception_name(exc), _short(exc)]}
        del msg
        self.send(reply)

    def perform(self, msg):
        op = msg.get("op")
        obj = self._object(msg.get("h"))
        args = self.decode(msg.get("a", []))
        if op == "call":
            kwargs = {k: v for k, v in self.decode(msg.get("k", []))}
            return obj(*args, **kwargs)
        if op == "getattr":
            return getattr(obj, args[0])
        if op == "setattr":
            setattr(obj, args[0], args[1])
            return None
        if op == "delattr":
            delattr(obj, args[0])
            return None
        if op == "len":
            return len(obj)
        if op == "iter":
            return iter(obj)
        if op == "next":
            return next(obj)
        if op == "getitem":
            return obj[args[0]]
        if op == "setitem":
            obj[args[0]] = args[1]
            return None
        if op == "delitem":
            del obj[args[0]]
            return None
        if op == "str":
            return str(obj)
        if op == "repr":
            return repr(obj)
        raise ProtocolError("unknown operation %r" % (op,))

    def call_judge(self, n, args, kwargs):
        """Calls test function #n in the judge; serves nested requests while waiting."""
        if _thread.get_ident() != self.thread:
            raise RuntimeError("a test function can only be called from the main thread")
        self.seq += 1
        seq = "c%d" % self.seq
        self.send({"q": seq, "op": "cb", "cb": n, "a": self.encode(list(args)),
                   "k": self.encode([[k, v] for k, v in kwargs.items()])})
        while True:
            msg = self.reader.read()
            if msg is None:
                os._exit(0)
            if "q" in msg:
                self.handle(msg)
                continue
            if msg.get("r") != seq:
                raise ProtocolError("reply out of order")
            if "x" in msg:
                name, text = msg["x"]
                cls = getattr(builtins, name, None)
                if not (isinstance(cls, type) and issubclass(cls, Exception)):
                    cls = RuntimeError
                raise cls(text)
            return self.decode(msg.get("v"))


def run_function_candidate(code, rfd, wfd):
    """Loads the program and serves the judge (function-style tests); returns when done."""
    server = CandidateServer(rfd, wfd)
    try:
        code_obj = _compile(code)
    except BaseException as exc:
        server.send({"k": "load_error", "err": _error_name(exc), "msg": _short(exc)})
        return
    mod = types.ModuleType("solution")
    mod.__dict__["__builtins__"] = builtins
    sys.modules["solution"] = mod
    try:
        exec(code_obj, mod.__dict__)
    except BaseException as exc:  # SystemExit too: exiting before the tests is not a pass
        server.send({"k": "load_error", "err": _error_name(exc), "msg": _short(exc)})
        return
    del code_obj
    server.send({"k": "loaded", "names": server.report_names(mod.__dict__)})
    server.serve()


# ---------------------------------------------------------------- limits

PR_SET_DUMPABLE = 4


def _resolve_prctl():
    import ctypes
    return ctypes.CDLL(None, use_errno=True).prctl


# Resolved once when the warm fork server imports this module, not again in every candidate
# process it forks (a CDLL and a symbol lookup per fork cost ~0.25 ms and ~40 page faults).
_PRCTL = _resolve_prctl()


def raise_oom_score():
    """Makes this process (and what it forks) the OOM killer's first choice.

    Raising one's own score is allowed unprivileged, so the kernel picks a candidate, never the
    fork server, when the container's memory runs out. /proc/self is root-owned while the
    process is non-dumpable (inherited from the fork server), so dumpable is switched on for
    the write and off again; no candidate code runs in this process yet, and every process of
    the previous candidate is gone, so nothing can attach in between.
    """
    prctl = _PRCTL or _resolve_prctl()
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, b"1000")
        finally:
            os.close(fd)
    except OSError:
        pass
    finally:
        if prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            os._exit(5)


def candidate_environ(run_dir):
    """The whole environment a candidate runs with."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": run_dir, "LANG": "C.UTF-8", "TMPDIR": run_dir}


# The run dir whose candidate environment the process that forks candidates already has
# (prepare_environ), or None: then each candidate sets it itself.
_environ_ready_for = None


def set_environ(run_dir):
    """This process's environment becomes exactly candidate_environ(run_dir)."""
    os.environ.clear()
    os.environ.update(candidate_environ(run_dir))


def prepare_environ(run_dir):
    """Gives this process (the warm one that forks candidates, whose own environment is of no
    use) the candidates' environment once, so a forked candidate need not set it: rewriting
    os.environ runs enough Python code to copy ~140 shared pages (~0.6 ms) in every fork."""
    global _environ_ready_for
    set_environ(run_dir)
    _environ_ready_for = run_dir


# The fork server ignores every signal it can; a candidate gets what a fresh python3 has: SIGINT
# raises KeyboardInterrupt, SIGPIPE and SIGXFSZ ignored (Python's start-up), every other standard
# signal at its default (SIGXCPU too, so the soft CPU limit ends it). Plain ints for
# _signal.signal: signal.signal's enum conversions would copy ~100 shared pages per fork.
# (Realtime signals stay ignored.)
_SIGINT = int(signal.SIGINT)
_IGNORED_SIGNALS = (int(signal.SIGPIPE), int(signal.SIGXFSZ))
_DEFAULT_SIGNALS = tuple(
    n for n in range(1, int(signal.SIGRTMIN) if hasattr(signal, "SIGRTMIN") else 32)
    if n not in (int(signal.SIGKILL), int(signal.SIGSTOP), int(signal.SIGCHLD), _SIGINT) + _IGNORED_SIGNALS
    and n in signal.valid_signals()
)


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
    if _environ_ready_for != run_dir:
        set_environ(run_dir)
    os.chdir(run_dir)
    for sig in _DEFAULT_SIGNALS:
        _signal.signal(sig, _signal.SIG_DFL)
    for sig in _IGNORED_SIGNALS:
        _signal.signal(sig, _signal.SIG_IGN)
    _signal.signal(_SIGINT, _signal.default_int_handler)


# ---------------------------------------------------------------- stdin/stdout tests

def run_stdio(spec, reporter, result_fd):
    try:
        code_obj = _compile(spec["code"])
    except BaseException as exc:
        reporter.send("load_error", err=_error_name(exc), msg=_short(exc))
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


def run_job(spec, fds):
    """Entry point inside the runner once the job spec arrived. fds: result, chan_r, chan_w."""
    result_fd, chan_r, chan_w = fds
    kind = spec["kind"]
    if kind == "stdio":
        os.close(chan_r)
        os.close(chan_w)
        run_stdio(spec, Reporter(result_fd, spec["nonce"]), result_fd)
    else:
        # Function-style: no pipe to the fork server at all while candidate code runs.
        os.close(result_fd)
        code = spec["code"]
        del spec
        run_function_candidate(code, chan_r, chan_w)
