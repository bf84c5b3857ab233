"""The judge process: runs function-style test code with no candidate code in its memory.

Forked warm from the fork server next to the candidate process (runner.py). The test code
(MBPP asserts, HumanEval's check(candidate), `from solution import f`, call-style cases) runs
here; the candidate's functions, classes and objects are reachable only as `CandidateObject`
stubs. Calling a stub sends the call's arguments to the candidate process and receives plain
data back (plain_data.py), rebuilt here by exact type; any other result stays behind in the
candidate process and is represented here by a new stub (a numbered handle). So:

  - no candidate `__eq__`, `__bool__`, `__sub__`, `__hash__`, `__len__`... ever runs here: a
    stub refuses every comparison, truth test, hash and arithmetic (NotPlainData, and the test
    fails even if test code catches it), and the values rebuilt from the wire are builtins;
  - the candidate process learns only the arguments of each call (and which handle or
    attribute is asked for): never the expected values, the test code, the nonce or this
    process's pipe to the fork server, none of which it can reach: this process is not
    dumpable (no ptrace, no /proc/<pid>/mem|fd), and the pipes are its own;
  - stateful candidates (classes, generators, closures) stay in the candidate process: a method
    call, attribute read/write, len(), iter()/next(), indexing, str()/repr() on a stub is one
    request about that handle; the result is again plain data or a handle. Test functions
    passed as arguments (a key=, a lambda) go the other way as numbered callbacks: the
    candidate can call them but never holds them; they run here on plain-data arguments.

Messages to the fork server: newline-delimited JSON tagged with the run's nonce (loaded,
load_error, test_error, start, res, end); a test passes only when it ran to the end here.
"""

import ast
import builtins
import importlib
import math
import os
import select
import sys
import types

from plain_data import (Decoder, Encoder, FrameReader, NotPlainData, ProtocolError, frame_bytes,
                        write_all)

MAX_REPLY_BYTES = 16 << 20
MAX_NESTING = 50
FLOAT_REL_TOL = 1e-6
FLOAT_ABS_TOL = 1e-9

_EXCEPTIONS = {k: v for k, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
_BUILTIN_BY_ID = {id(v): k for k, v in vars(builtins).items()
                  if not k.startswith("_") and callable(v) and not isinstance(v, types.ModuleType)}
PROTECTED_NAMES = frozenset(dir(builtins)) | frozenset(sys.stdlib_module_names)
_EXIT_NAMES = ("SystemExit", "KeyboardInterrupt", "GeneratorExit")


class CandidateDied(BaseException):
    """The candidate process exited (or closed its side) before answering."""


class CandidateExit(BaseException):
    """The candidate called sys.exit() (or similar) inside a call."""

    def __init__(self, name, text):
        super().__init__(text)
        self.err_name = name


class OutputLimit(BaseException):
    """The candidate's answer was over the reply cap."""


class CandidateStopIteration(RuntimeError):
    """StopIteration out of a plain call: never allowed to end the judge's own loops (map, all)."""


def _short(exc):
    try:
        return ("%s: %s" % (type(exc).__name__, exc))[:300]
    except BaseException:
        return type(exc).__name__


def error_name(exc):
    name = getattr(exc, "err_name", None)
    if type(name) is str:
        return name
    return "MemoryError" if isinstance(exc, MemoryError) else type(exc).__name__


# ---------------------------------------------------------------- the channel to the candidate

class Channel:
    """Requests to the candidate process; serves its callbacks while waiting for an answer."""

    def __init__(self, rfd, wfd, pidfd):
        self.reader = FrameReader(rfd, MAX_REPLY_BYTES)
        self.rfd = rfd
        self.wfd = wfd
        self.pidfd = pidfd
        self.poll = select.poll()
        self.poll.register(rfd, select.POLLIN)
        if pidfd is not None:
            self.poll.register(pidfd, select.POLLIN)
        self.seq = 0
        self.depth = 0
        self.broken = None  # the exception class once the channel is unusable
        self.violations = 0
        self.callbacks = []
        self.callback_ids = {}
        self.encode = Encoder(self._send_other)
        self.decode = Decoder(handle=CandidateObject, callback=self._callback_of, match=MatchResult.from_wire)

    # -- values
    def violation(self, text):
        """Records an attempt to use candidate data as anything but plain data."""
        self.violations += 1
        return NotPlainData(text)

    def _send_other(self, v):
        if type(v) is CandidateObject:
            return {"h": object.__getattribute__(v, "_rlmesh_h")}
        name = _BUILTIN_BY_ID.get(id(v))
        if name is not None and getattr(builtins, name, None) is v:
            return {"bi": name}
        if callable(v):
            n = self.callback_ids.get(id(v))
            if n is None or self.callbacks[n] is not v:
                self.callbacks.append(v)
                n = len(self.callbacks) - 1
                self.callback_ids[id(v)] = n
            return {"cb": n}
        raise NotPlainData("cannot send a %s to the candidate" % type(v).__name__)

    def _callback_of(self, n):
        if 0 <= n < len(self.callbacks):
            return self.callbacks[n]
        raise ProtocolError("unknown callback %d" % n)

    def _decode(self, node):
        try:
            return self.decode(node)
        except NotPlainData as exc:
            raise self.violation(str(exc)) from None

    # -- wire
    def _break(self, cls, text):
        if self.broken is None:
            self.broken = cls
        raise cls(text)

    def _recv(self):
        while True:
            try:
                msg = self.reader.next_frame()
            except ProtocolError as exc:
                self._break(ProtocolError, str(exc))
            if msg is not None:
                return msg
            events = dict(self.poll.poll())
            if self.rfd in events:
                try:
                    more = self.reader.feed()
                except OSError:
                    more = False
                if not more:
                    self._break(CandidateDied, "the candidate process closed its side")
            elif self.pidfd is not None and self.pidfd in events:
                self._break(CandidateDied, "the candidate process exited")

    def _send(self, msg):
        try:
            write_all(self.wfd, frame_bytes(msg, 1 << 30))
        except OSError:
            self._break(CandidateDied, "the candidate process closed its side")

    def recv_load(self):
        msg = self._recv()
        if msg.get("k") not in ("loaded", "load_error"):
            self._break(ProtocolError, "expected the load report")
        return msg

    def request(self, op, h, args=(), kwargs=None):
        """One request about candidate object #h; returns the decoded answer or raises."""
        if self.broken is not None:
            raise self.broken("the candidate process is gone")
        if self.depth >= MAX_NESTING:
            raise RecursionError("calls between test and candidate nested too deeply")
        self.seq += 1
        seq = self.seq
        try:
            msg = {"q": seq, "op": op, "h": h, "a": self.encode(list(args))}
            if kwargs:
                msg["k"] = self.encode([[k, v] for k, v in kwargs.items()])
        except NotPlainData as exc:
            raise NotPlainData("argument: %s" % exc) from None
        self.depth += 1
        try:
            self._send(msg)
            del msg
            while True:
                reply = self._recv()
                if "q" in reply:
                    self._serve_callback(reply)
                    continue
                if reply.get("r") != seq:
                    self._break(ProtocolError, "answer out of order")
                if "x" in reply:
                    raise self._exception(op, reply["x"])
                if "v" not in reply:
                    self._break(ProtocolError, "answer without a value")
                return self._decode(reply["v"])
        finally:
            self.depth -= 1

    def _exception(self, op, x):
        if type(x) is not list or len(x) != 2 or type(x[0]) is not str or type(x[1]) is not str:
            self._break(ProtocolError, "malformed exception")
        name, text = x[0], x[1][:300]
        if name in _EXIT_NAMES:
            return CandidateExit(name, text)
        if name in ("StopIteration", "StopAsyncIteration"):
            return StopIteration() if op == "next" else CandidateStopIteration(text)
        if name == "OutputLimit":
            return OutputLimit(text)
        if name == "NotPlainData":
            return self.violation(text)
        cls = _EXCEPTIONS.get(name)
        if cls is None or not issubclass(cls, Exception):
            cls = RuntimeError
        for base in cls.__mro__:
            try:
                return base(text)
            except TypeError:
                continue
        return RuntimeError(text)

    def _serve_callback(self, msg):
        seq = msg.get("q")
        if msg.get("op") != "cb" or type(msg.get("cb")) is not int:
            self._break(ProtocolError, "malformed callback request")
        fn = self._callback_of(msg["cb"])
        try:
            args = self._decode(msg.get("a", []))
            kwargs = self._decode(msg.get("k", []))
            if type(args) is not list or type(kwargs) is not list:
                raise NotPlainData("malformed callback arguments")
            kw = {}
            for kv in kwargs:
                if type(kv) is not list or len(kv) != 2 or type(kv[0]) is not str:
                    raise NotPlainData("malformed keyword argument")
                kw[kv[0]] = kv[1]
            self.depth += 1
            try:
                value = fn(*args, **kw)
            finally:
                self.depth -= 1
            reply = {"r": seq, "v": self.encode(value)}
        except (CandidateDied, ProtocolError):
            raise
        except NotPlainData as exc:
            reply = {"r": seq, "x": ["NotPlainData", str(exc)[:300]]}
        except BaseException as exc:
            name = type(exc).__name__ if type(exc) in _EXCEPTIONS.values() else "Exception"
            reply = {"r": seq, "x": [name, _short(exc)]}
        self._send(reply)


CHANNEL = None  # the one channel of this judge process


def _channel():
    if CHANNEL is None:
        raise CandidateDied("no candidate")
    return CHANNEL


def end_run():
    """After a run in a judge process that serves the next one too: the run's channel is dead
    (a handle kept from it refers to nothing), its `solution` module is gone."""
    global CHANNEL
    if CHANNEL is not None:
        CHANNEL.broken = CandidateDied
    CHANNEL = None
    sys.modules.pop("solution", None)


# ---------------------------------------------------------------- stubs

def _refuse(name):
    def refused(self, *args):
        raise _channel().violation("a candidate object is not plain data (%s)" % name)
    refused.__name__ = name
    return refused


class CandidateObject:
    """A candidate function, class or object, known here only by its handle number.

    Calls, attribute access, len/iter/next, indexing and str/repr are requests to the candidate
    process; comparisons, truth tests, hashing and arithmetic are refused (NotPlainData): they
    would let the candidate decide a test.
    """

    __slots__ = ("_rlmesh_h", "_rlmesh_c")

    def __init__(self, h):
        object.__setattr__(self, "_rlmesh_h", h)
        object.__setattr__(self, "_rlmesh_c", CHANNEL)  # handles are numbers of one run's candidate

    def _rlmesh_req(self, op, args=(), kwargs=None):
        chan = _channel()
        if object.__getattribute__(self, "_rlmesh_c") is not chan:
            raise chan.violation("a candidate object of an earlier run")
        return chan.request(op, object.__getattribute__(self, "_rlmesh_h"), args, kwargs)

    def __call__(self, *args, **kwargs):
        return self._rlmesh_req("call", args, kwargs)

    def __getattr__(self, name):
        if name.startswith("_rlmesh"):
            raise AttributeError(name)
        return self._rlmesh_req("getattr", (name,))

    def __setattr__(self, name, value):
        self._rlmesh_req("setattr", (name, value))

    def __delattr__(self, name):
        self._rlmesh_req("delattr", (name,))

    def __len__(self):
        n = self._rlmesh_req("len")
        if type(n) is not int:
            raise _channel().violation("len() of a candidate object was not an int")
        return n

    def __iter__(self):
        it = self._rlmesh_req("iter")
        return it if type(it) is CandidateObject else iter(it)

    def __next__(self):
        return self._rlmesh_req("next")

    def __getitem__(self, key):
        return self._rlmesh_req("getitem", (key,))

    def __setitem__(self, key, value):
        self._rlmesh_req("setitem", (key, value))

    def __delitem__(self, key):
        self._rlmesh_req("delitem", (key,))

    def __str__(self):
        s = self._rlmesh_req("str")
        if type(s) is not str:
            raise _channel().violation("str() of a candidate object was not a str")
        return s

    def __repr__(self):
        try:
            s = self._rlmesh_req("repr")
        except BaseException:  # a broken channel or an odd answer: fall back to the handle
            s = None
        if type(s) is str:
            return s
        return "<candidate object #%d>" % object.__getattribute__(self, "_rlmesh_h")

    def __format__(self, spec):
        if spec:
            raise _channel().violation("a candidate object is not plain data (format)")
        return self.__str__()

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    __hash__ = _refuse("__hash__")
    __reduce__ = _refuse("__reduce__")
    __reduce_ex__ = _refuse("__reduce_ex__")


for _name in ("eq ne lt le gt ge bool contains add radd sub rsub mul rmul matmul rmatmul truediv rtruediv "
              "floordiv rfloordiv mod rmod divmod rdivmod pow rpow lshift rlshift rshift rrshift and rand "
              "xor rxor or ror iadd isub imul imatmul itruediv ifloordiv imod ipow ilshift irshift iand "
              "ixor ior neg pos abs invert int float complex index round trunc floor ceil enter exit "
              "instancecheck subclasscheck await aiter anext").split():
    setattr(CandidateObject, "__%s__" % _name, _refuse("__%s__" % _name))
del _name


class MatchResult:
    """A regex match made by the candidate, rebuilt from its spans (truthy, like re.Match)."""

    __slots__ = ("string", "_spans", "_names")

    def __init__(self, string, spans, names):
        self.string = string
        self._spans = spans
        self._names = names

    @classmethod
    def from_wire(cls, p, dec, depth):
        if type(p) is not list or len(p) != 3 or type(p[1]) is not list or type(p[2]) is not list:
            raise NotPlainData("bad match payload")
        string = dec(p[0], depth)
        if type(string) not in (str, bytes):
            raise NotPlainData("bad match string")
        spans = []
        for sp in p[1]:
            if type(sp) is not list or len(sp) != 2 or type(sp[0]) is not int or type(sp[1]) is not int:
                raise NotPlainData("bad match span")
            spans.append((sp[0], sp[1]))
        names = {}
        for kv in p[2]:
            if type(kv) is not list or len(kv) != 2 or type(kv[0]) is not str or type(kv[1]) is not int:
                raise NotPlainData("bad match group name")
            names[kv[0]] = kv[1]
        if not spans:
            raise NotPlainData("bad match payload")
        return cls(string, spans, names)

    def _index(self, g):
        if type(g) is str:
            g = self._names.get(g, -1)
        if type(g) is not int or not 0 <= g < len(self._spans):
            raise IndexError("no such group")
        return g

    def group(self, *groups):
        if not groups:
            groups = (0,)
        vals = []
        for g in groups:
            s, e = self._spans[self._index(g)]
            vals.append(None if s < 0 else self.string[s:e])
        return vals[0] if len(vals) == 1 else tuple(vals)

    def __getitem__(self, g):
        return self.group(g)

    def groups(self, default=None):
        return tuple(default if s < 0 else self.string[s:e] for s, e in self._spans[1:])

    def groupdict(self, default=None):
        return {k: (self.group(i) if self._spans[i][0] >= 0 else default) for k, i in self._names.items()}

    def span(self, g=0):
        return self._spans[self._index(g)]

    def start(self, g=0):
        return self._spans[self._index(g)][0]

    def end(self, g=0):
        return self._spans[self._index(g)][1]

    def __bool__(self):
        return True

    def __repr__(self):
        return "<match span=%r match=%r>" % (self._spans[0], self.group(0))


# ---------------------------------------------------------------- the tests' namespace

def _referenced_names(sources):
    """Names the test code reads or imports (plain names, `solution.X`, `from solution import X`)."""
    names = set()
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add(node.name)
                if node.asname:
                    names.add(node.asname)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "solution":
                names.add(node.attr)
    return names


def build_namespace(chan, names, sources, under_test):
    """The globals the tests run in, and the `solution` module they may import.

    Candidate names become stubs (or plain scalars). A candidate name that shadows a builtin or
    a stdlib module (`len`, `sorted`, `math`) is bound only when it is the function under test:
    the entry point, or, without one, when the tests reach the candidate through no other name
    (MBPP's `def sum(a, b)`). Otherwise a candidate could hand the tests its own `len` or `math`.
    A candidate module global (`import math`) becomes the judge's own import of that stdlib
    module when the tests use the name.
    """
    referenced = _referenced_names(sources)
    values, modules = {}, {}
    if type(names) is not list:
        raise ProtocolError("malformed name list")
    for entry in names:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str:
            raise ProtocolError("malformed name entry")
        name, node = entry
        if not name.isidentifier() or name.startswith("__"):
            continue  # never __builtins__, __name__, ... from the candidate
        if type(node) is dict and len(node) == 1 and "M" in node:
            if type(node["M"]) is str:
                modules[name] = node["M"]
            continue
        try:
            values[name] = chan.decode(node)
        except NotPlainData:
            continue
    shadows = {n: v for n, v in values.items() if n in PROTECTED_NAMES}
    allowed = allowed_shadows(shadows, values, referenced, under_test)
    ns = {"__name__": "__rlmesh_tests__", "__builtins__": builtins}
    exported = {}
    for name, value in values.items():
        if name in PROTECTED_NAMES and name not in allowed:
            continue
        exported[name] = value
    for name, modname in modules.items():
        # `import math` / `import itertools as it`: the judge's own copy. A stdlib name must be
        # that very module (a candidate cannot rename `cmath` to `math`).
        if name not in referenced or name in dir(builtins) or modname.split(".")[0] not in sys.stdlib_module_names:
            continue
        if name in PROTECTED_NAMES and modname != name:
            continue
        if True:
            try:
                exported[name] = importlib.import_module(modname)
            except BaseException:
                pass
    ns.update(exported)
    mod = types.ModuleType("solution")
    mod.__dict__.update(exported)
    mod.__all__ = [n for n in exported if not n.startswith("_")]
    sys.modules["solution"] = mod
    return ns, shadows, values


def allowed_shadows(shadows, values, referenced, under_test):
    """Which candidate names that shadow a builtin/stdlib name the given test code may see."""
    if under_test:
        return {n for n in under_test if n in values}
    if any(n in referenced for n in values if n not in PROTECTED_NAMES):
        return set()
    return {n for n in shadows if n in referenced}


def bind_shadows(ns, shadows, allowed):
    """Per test: bind the allowed shadowing names, unbind the others (the builtin shows again)."""
    for name, value in shadows.items():
        if name in allowed:
            ns[name] = value
        elif ns.get(name) is value:
            del ns[name]


# ---------------------------------------------------------------- call-style comparison

def to_json_value(value):
    """A decoded answer as JSON-like data: tuples become lists, sets sorted lists where possible."""
    t = type(value)
    if t is CandidateObject or t is MatchResult:
        raise _channel().violation("answer is not plain data")
    if t in (list, tuple) or t.__name__ == "deque":
        return [to_json_value(v) for v in value]
    if t in (set, frozenset):
        items = [to_json_value(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if t is dict or t.__name__ in ("OrderedDict", "Counter"):
        return {k if type(k) is str else str(k): to_json_value(v) for k, v in value.items()}
    if t is bytes or t is bytearray:
        return bytes(value).decode("latin-1")
    if t is complex or t is range or t.__name__ == "Decimal":
        return str(value)
    return value


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


# ---------------------------------------------------------------- running the tests

def _compile_tests(spec):
    setup = compile(spec.get("setup") or "", "<test-setup>", "exec", dont_inherit=True)
    tests = [compile(t, "<test-%d>" % i, "exec", dont_inherit=True) for i, t in enumerate(spec["tests"])]
    return setup, tests


def _outcome(chan, before, exc):
    """(ok, err, msg) of one test: it ran to the end and nothing odd happened on the way."""
    if chan.violations != before:
        detail = _short(exc) if exc is not None else "a candidate object was used as data"
        return False, "NotPlainData", detail
    if exc is not None:
        return False, error_name(exc), _short(exc)
    if chan.broken is not None:
        return False, chan.broken.__name__, "the candidate process is gone"
    return True, "", ""


def run(spec, reporter, chan):
    global CHANNEL
    CHANNEL = chan
    kind = spec["kind"]
    try:
        if kind == "assert":
            setup, tests = _compile_tests(spec)
    except SyntaxError as exc:
        reporter.send("test_error", msg=_short(exc))
        return
    try:
        load = chan.recv_load()
    except (CandidateDied, ProtocolError) as exc:
        reporter.send("load_error", err=type(exc).__name__, msg=_short(exc))
        return
    if load["k"] == "load_error":
        err, msg = load.get("err"), load.get("msg")
        reporter.send("load_error", err=err if type(err) is str else "Error", msg=msg if type(msg) is str else "")
        return
    sources = [spec.get("setup") or "", *spec.get("tests", [])]
    entry = spec.get("entry_point") if kind == "assert" else spec.get("fn")
    try:
        ns, shadows, values = build_namespace(chan, load.get("names"), sources, [entry] if entry else [])
    except ProtocolError as exc:
        reporter.send("load_error", err="ProtocolError", msg=_short(exc))
        return
    reporter.send("loaded")
    if kind == "assert":
        run_assert(spec, reporter, chan, ns, setup, tests, shadows, values)
    elif kind == "call":
        run_call(spec, reporter, chan, ns)
    else:
        reporter.send("test_error", msg="unknown test kind %r" % kind)


def run_assert(spec, reporter, chan, ns, setup, tests, shadows, values):
    if spec.get("entry_point"):
        ns["entry_point"] = ns.get(spec["entry_point"])
    try:
        exec(setup, ns)
    except BaseException as exc:
        reporter.send("load_error", err=error_name(exc), msg="test setup: " + _short(exc))
        return
    under_test = [spec["entry_point"]] if spec.get("entry_point") else []
    setup_names = _referenced_names([spec.get("setup") or ""])
    for i, test in enumerate(tests):
        if shadows:
            # Decided per test: `assert sum(10, 15) == 6` may reach the candidate's `sum`, while
            # `assert len(f(x)) == 3` in another test keeps the builtin len.
            referenced = setup_names | _referenced_names([spec["tests"][i]])
            bind_shadows(ns, shadows, allowed_shadows(shadows, values, referenced, under_test))
        reporter.send("start", i=i)
        before = chan.violations
        failure = None
        try:
            exec(test, ns)
        except BaseException as exc:
            failure = exc
        ok, err, msg = _outcome(chan, before, failure)
        del failure
        if ok:
            reporter.send("res", i=i, ok=True)
        else:
            reporter.send("res", i=i, ok=False, err=err, msg=msg)
    reporter.send("end")


def run_call(spec, reporter, chan, ns):
    name = spec["fn"]
    for i, case in enumerate(spec["cases"]):
        reporter.send("start", i=i)
        before = chan.violations
        failure = None
        matched = False
        try:
            fn = ns.get(name)
            if fn is None and ns.get("Solution") is not None:
                # LeetCode-style (LiveCodeBench functional): `class Solution` with the method.
                fn = getattr(ns["Solution"](), name)
            if fn is None:
                raise NameError("function %r is not defined" % name)
            matched = values_match(to_json_value(fn(*case["args"])), case["expected"])
        except BaseException as exc:
            failure = exc
        ok, err, msg = _outcome(chan, before, failure)
        del failure
        if ok and not matched:
            ok, err, msg = False, "WrongAnswer", ""
        if ok:
            reporter.send("res", i=i, ok=True)
        else:
            reporter.send("res", i=i, ok=False, err=err, msg=msg)
    reporter.send("end")
