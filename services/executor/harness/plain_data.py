"""Plain data on the wire between the judge process and the candidate process.

The judge never receives a candidate object: every value crosses as JSON in a small tagged
encoding and is rebuilt on the other side by exact type. The judge's decoder (`Decoder`) accepts
only these shapes and builds values with its own classes:

  null, true/false, JSON integers, JSON floats (also NaN/Infinity), JSON strings,
  JSON arrays                        -> list
  {"I": hex}                         -> int (any size; hex is not bound by int_max_str_digits)
  {"t": [..]} {"s": [..]} {"f": [..]} -> tuple, set, frozenset
  {"d": [[k, v], ..]}                -> dict
  {"b": base64} {"y": base64}         -> bytes, bytearray
  {"c": [re, im]}                    -> complex
  {"q": [..]} {"o": [[k, v]]} {"C": [[k, v]]} {"r": [a, b, c]} {"D": str}
                                     -> collections.deque, OrderedDict, Counter, range, Decimal
  {"h": n}                           -> a handle: an object that stays in the candidate process
  {"cb": n}                          -> a judge function the candidate may call back (by number)
  {"bi": name}                       -> a builtin (len, int, str.upper is not one: only names)
  {"m": [..]}                        -> a regex match, rebuilt as a judge-side MatchResult

Anything else (another tag, a dict with two keys, a set holding a list, nesting past MAX_DEPTH,
a frame over its size cap) is NotPlainData or ProtocolError, never a crash. pickle and marshal
are not used: their decoders run constructors or crash on hostile input.

Frames: 4-byte big-endian length + UTF-8 JSON object.
"""

import base64
import collections
import decimal
import json
import os
import struct

MAX_DEPTH = 200
MAX_DECIMAL_CHARS = 10_000
_SAFE_INT = 1 << 53

_loads = json.loads
_dumps = json.JSONEncoder(ensure_ascii=True, check_circular=False, allow_nan=True, separators=(",", ":")).encode
_b64e = base64.b64encode
_b64d = base64.b64decode
_OrderedDict = collections.OrderedDict
_Counter = collections.Counter
_deque = collections.deque
_defaultdict = collections.defaultdict
_Decimal = decimal.Decimal


class NotPlainData(BaseException):
    """A value (or something inside it) is not plain data.

    A BaseException so that a test's `except Exception:` cannot swallow it; the judge also
    records every occurrence, so a test in which one happened fails even if it was caught.
    """


class ProtocolError(BaseException):
    """The other process broke the framing or the message shapes."""


# ---------------------------------------------------------------- frames

def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def frame_bytes(msg, max_bytes):
    """Serialises a message; raises NotPlainData when it is larger than max_bytes."""
    body = _dumps(msg).encode("ascii")
    if len(body) > max_bytes:
        raise NotPlainData("message of %d bytes is over the %d-byte cap" % (len(body), max_bytes))
    return struct.pack(">I", len(body)) + body


def parse_body(body):
    """JSON object from a frame body; ProtocolError for anything else."""
    try:
        msg = _loads(body)
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ProtocolError("undecodable frame: %s" % type(exc).__name__) from None
    if type(msg) is not dict:
        raise ProtocolError("frame is not an object")
    return msg


class FrameReader:
    """Frames from a file descriptor, each at most max_bytes; None at end of stream."""

    def __init__(self, fd, max_bytes):
        self.fd = fd
        self.max_bytes = max_bytes
        self.buf = bytearray()

    def next_frame(self):
        """A complete frame already buffered, or None."""
        if len(self.buf) < 4:
            return None
        (size,) = struct.unpack(">I", self.buf[:4])
        if size > self.max_bytes:
            raise ProtocolError("frame of %d bytes is over the %d-byte cap" % (size, self.max_bytes))
        if len(self.buf) < 4 + size:
            return None
        body = bytes(self.buf[4:4 + size])
        del self.buf[:4 + size]
        return parse_body(body)

    def feed(self):
        """Reads once (blocking); False at end of stream."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read(self):
        """Blocking: the next frame, or None at end of stream."""
        while True:
            msg = self.next_frame()
            if msg is not None:
                return msg
            if not self.feed():
                if self.buf:
                    raise ProtocolError("stream ended inside a frame")
                return None


# ---------------------------------------------------------------- decoding

def _pairs(p, dec, depth):
    if type(p) is not list:
        raise NotPlainData("mapping payload is not a list")
    out = []
    for kv in p:
        if type(kv) is not list or len(kv) != 2:
            raise NotPlainData("mapping entry is not a pair")
        out.append((dec(kv[0], depth), dec(kv[1], depth)))
    return out


def _items(p, dec, depth):
    if type(p) is not list:
        raise NotPlainData("sequence payload is not a list")
    return [dec(x, depth) for x in p]


def _int_of(p):
    if type(p) is not str or not 0 < len(p) <= (1 << 22):
        raise NotPlainData("bad integer payload")
    try:
        return int(p, 16)
    except ValueError:
        raise NotPlainData("bad integer payload") from None


def _num(x):
    if type(x) is int or type(x) is float:
        return x
    raise NotPlainData("bad number")


class Decoder:
    """Rebuilds values from the wire by exact type; hooks resolve handles and callbacks.

    A missing hook means that tag is refused (NotPlainData).
    """

    def __init__(self, handle=None, callback=None, builtin=None, match=None):
        self.handle = handle
        self.callback = callback
        self.builtin = builtin
        self.match = match

    def __call__(self, node, depth=0):
        t = type(node)
        if t is str or t is int or t is float or t is bool or node is None:
            return node
        if depth >= MAX_DEPTH:
            raise NotPlainData("value nested deeper than %d" % MAX_DEPTH)
        d = depth + 1
        if t is list:
            return [self(x, d) for x in node]
        if t is not dict or len(node) != 1:
            raise NotPlainData("malformed value")
        ((tag, p),) = node.items()
        try:
            if tag == "I":
                return _int_of(p)
            if tag == "t":
                return tuple(_items(p, self, d))
            if tag == "d":
                return dict(_pairs(p, self, d))
            if tag == "s":
                return set(_items(p, self, d))
            if tag == "f":
                return frozenset(_items(p, self, d))
            if tag == "b" or tag == "y":
                if type(p) is not str:
                    raise NotPlainData("bad bytes payload")
                raw = _b64d(p.encode("ascii"), validate=True)
                return raw if tag == "b" else bytearray(raw)
            if tag == "c":
                if type(p) is not list or len(p) != 2:
                    raise NotPlainData("bad complex payload")
                return complex(_num(p[0]), _num(p[1]))
            if tag == "q":
                return _deque(_items(p, self, d))
            if tag == "o":
                return _OrderedDict(_pairs(p, self, d))
            if tag == "C":
                c = _Counter()
                for k, v in _pairs(p, self, d):
                    c[k] = v
                return c
            if tag == "r":
                if type(p) is not list or len(p) != 3 or not all(type(x) is int for x in p):
                    raise NotPlainData("bad range payload")
                return range(p[0], p[1], p[2])
            if tag == "D":
                if type(p) is not str or len(p) > MAX_DECIMAL_CHARS:
                    raise NotPlainData("bad decimal payload")
                return _Decimal(p)
            if tag == "h" and self.handle is not None:
                if type(p) is not int:
                    raise NotPlainData("bad handle")
                return self.handle(p)
            if tag == "cb" and self.callback is not None:
                if type(p) is not int:
                    raise NotPlainData("bad callback")
                return self.callback(p)
            if tag == "bi" and self.builtin is not None:
                if type(p) is not str:
                    raise NotPlainData("bad builtin")
                return self.builtin(p)
            if tag == "m" and self.match is not None:
                return self.match(p, self, d)
        except (TypeError, ValueError, ArithmeticError, decimal.InvalidOperation, RecursionError) as exc:
            # e.g. a list as a set element or dict key, a bad base64 string, a zero range step.
            raise NotPlainData("malformed %r value: %s" % (tag, type(exc).__name__)) from None
        raise NotPlainData("unknown value tag %r" % (tag,))


# ---------------------------------------------------------------- encoding

class Encoder:
    """Plain data to the wire by exact type.

    `other(value)` decides what happens to anything that is not plain data (the judge sends
    its callables as callbacks and refuses the rest; the candidate keeps them as handles).
    `special(value, t)` may convert a few non-plain types first (the candidate side turns a
    namedtuple into a tuple, a regex match into its spans); it returns NotImplemented to pass.
    """

    def __init__(self, other, special=None):
        self.other = other
        self.special = special

    def __call__(self, v, depth=0):
        t = type(v)
        if t is str or t is bool or t is float or v is None:
            return v
        if t is int:
            return v if -_SAFE_INT < v < _SAFE_INT else {"I": hex(v)}
        if depth >= MAX_DEPTH:
            raise NotPlainData("value nested deeper than %d" % MAX_DEPTH)
        d = depth + 1
        if t is list:
            return [self(x, d) for x in v]
        if t is tuple:
            return {"t": [self(x, d) for x in v]}
        if t is dict or t is _defaultdict:
            return {"d": [[self(k, d), self(x, d)] for k, x in dict.items(v)]}
        if t is set:
            return {"s": [self(x, d) for x in v]}
        if t is frozenset:
            return {"f": [self(x, d) for x in v]}
        if t is bytes:
            return {"b": _b64e(v).decode("ascii")}
        if t is bytearray:
            return {"y": _b64e(v).decode("ascii")}
        if t is complex:
            return {"c": [v.real, v.imag]}
        if t is _deque:
            return {"q": [self(x, d) for x in v]}
        if t is _OrderedDict:
            return {"o": [[self(k, d), self(x, d)] for k, x in dict.items(v)]}
        if t is _Counter:
            return {"C": [[self(k, d), self(x, d)] for k, x in dict.items(v)]}
        if t is range:
            return {"r": [v.start, v.stop, v.step]}
        if t is _Decimal:
            return {"D": str(v)}
        if self.special is not None:
            out = self.special(v, t, d)
            if out is not NotImplemented:
                return out
        return self.other(v)
