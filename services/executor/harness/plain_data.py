"""Strict conversion of candidate values to plain builtin data.

Every comparison the harness makes goes through `to_plain` first, so a candidate's object can
never take part in a comparison: only values whose exact type is a builtin (or a few C-implemented
stdlib containers) are accepted, recursively. An object with an always-True `__eq__`, a subclass
of int/str/list, or a custom `__bool__` is rejected with NotPlainData.

Builtins are bound as default arguments at import time, before any candidate code runs, so
rebinding names in `builtins` later does not change what this module calls.
"""

import collections
import decimal
import operator
import re

MAX_DEPTH = 200
MAX_ITEMS = 5_000_000


class NotPlainData(Exception):
    """A value (or something inside it) is not plain builtin data."""


_ATOMS = frozenset([int, float, complex, str, bytes, bool, type(None), range, decimal.Decimal])
_OrderedDict = collections.OrderedDict
_Counter = collections.Counter
_defaultdict = collections.defaultdict
_deque = collections.deque


def to_plain(value, _depth=0, _type=type, _atoms=_ATOMS, _list=list, _tuple=tuple, _dict=dict,
             _set=set, _frozenset=frozenset, _len=len, _iter_list=list.__iter__,
             _iter_tuple=tuple.__iter__, _dict_items=dict.items, _set_iter=set.__iter__,
             _fset_iter=frozenset.__iter__, _odict=_OrderedDict, _counter=_Counter,
             _defdict=_defaultdict, _deque=_deque, _deque_iter=_deque.__iter__):
    """Returns a structurally equal copy of `value` made of builtin types only, or raises."""
    t = _type(value)
    if t in _atoms:
        return value
    if _depth > MAX_DEPTH:
        raise NotPlainData("value nested too deeply")
    d = _depth + 1
    if t is _list:
        return [to_plain(x, d) for x in _iter_list(value)]
    if t is _tuple:
        return _tuple(to_plain(x, d) for x in _iter_tuple(value))
    if t is _dict or t is _counter or t is _defdict:
        # Counter/defaultdict compare like dicts; their Python-level methods could be patched.
        return {to_plain(k, d): to_plain(v, d) for k, v in _dict_items(value)}
    if t is _odict:
        return _odict((to_plain(k, d), to_plain(v, d)) for k, v in _dict_items(value))
    if t is _set:
        return {to_plain(x, d) for x in _set_iter(value)}
    if t is _frozenset:
        return _frozenset(to_plain(x, d) for x in _fset_iter(value))
    if t is _deque:
        return _deque(to_plain(x, d) for x in _deque_iter(value))
    raise NotPlainData("value of type %s is not plain data" % getattr(t, "__name__", "?"))


_OPS = {
    "Eq": operator.eq, "NotEq": operator.ne, "Lt": operator.lt, "LtE": operator.le,
    "Gt": operator.gt, "GtE": operator.ge, "In": lambda a, b: a in b,
    "NotIn": lambda a, b: a not in b, "Is": operator.is_, "IsNot": operator.is_not,
}


def compare_plain(op_names, operands, _bool=bool, _type=type, _ops=_OPS, _len=len):
    """Evaluates a (possibly chained) comparison on plain copies; returns a real bool."""
    plain = [to_plain(v) for v in operands]
    for i in range(_len(op_names)):
        result = _ops[op_names[i]](plain[i], plain[i + 1])
        # Comparisons of builtin values return bools; anything else means something odd.
        if _type(result) is not _bool:
            raise NotPlainData("comparison did not produce a bool")
        if not result:
            return False
    return True


def truth_plain(value, _bool=bool, _type=type, _match=re.Match):
    """Truthiness of a plain copy, so no candidate `__bool__`/`__len__` is consulted.

    A regex match object (C type, cannot be subclassed) is truthy: MBPP asserts on re.search.
    """
    if _type(value) is _match:
        return True
    return _bool(to_plain(value))
