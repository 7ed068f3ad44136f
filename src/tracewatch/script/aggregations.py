"""Map: an autovivifying nested map for counting and aggregating, like bpftrace's
``@maps`` and Perl's hashes.

    calls = Map(int)                       # counters
    calls[comm][sysid] += 1                # levels are created on first use
    calls[comm, sysid] += 1                # the same entry: a tuple key is a path
    lat = Map(stats)                       # count/sum/min/max/avg per key
    lat[comm].add(ns)                      # or: lat[comm] <<= ns
    dist = Map(hist)                       # one power-of-2 histogram per key
    dist[comm].add(ns)
    calls.print(top=10)                    # @calls[bash, 1]: 42 ...

Leaves (the argument of ``Map``):

==========================  ==========================================
``int``, ``float``          a number; ``m[k] += v``; a missing key reads 0
``count``                   ``m[k].add()`` counts one (``m[k] += n`` counts n)
``sum``, ``min``, ``max``   the builtins: ``m[k].add(v)`` keeps the sum/min/max
``avg``                     ``m[k].add(v)`` keeps the mean
``stats``                   count, sum, min, max and avg together
``hist``, ``lhist(a,b,s)``  a histogram per key (see :mod:`.histogram`)
any other callable          ``Map(list)``: ``m[k].append(x)``
==========================  ==========================================

Every aggregating leaf also takes ``m[k] <<= v`` for ``m[k].add(v)``.

Keys are paths: ``m[a][b]`` and ``m[a, b]`` are the same entry, and a Map's
depth (the number of key levels) is fixed by the first entry stored.
Iterating, ``len``, ``items()``, ``top()`` and ``sorted()`` see the leaves,
with their full key as a tuple: ``(('bash', 1), 42)``.  ``m[a]`` of a deeper
Map is a view of the entries under ``a`` with the same methods.

Batch handlers aggregate whole numpy columns without a Python loop over events:
``m.add_counts(b.common_pid)`` counts rows per key, ``m.update_from_arrays(
(b.common_comm, b.id), b.duration)`` feeds values to each key's leaf.
"""

from __future__ import annotations

import builtins
import heapq
import operator
import sys
from typing import IO, Any, Callable, Iterator, Sequence

import numpy as np

from .histogram import Hist, LHist, _HistBase, hist, lhist

__all__ = ["Map", "Count", "Sum", "Min", "Max", "Avg", "Stats", "count", "avg", "stats"]


# --------------------------------------------------------------------------- leaves


def _fmt(v: Any) -> str:
    """A value as bpftrace prints it: integers plainly, floats shortly."""
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return str(v)
        if v.is_integer() or abs(v) >= 1e6:
            return f"{v:.0f}"
        return f"{v:.6g}"
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    return str(v)


def _c_div(total: Any, n: int) -> Any:
    """bpftrace's integer average (truncated towards zero, as in C)."""
    if isinstance(total, int):
        q = abs(total) // n
        return q if total >= 0 else -q
    return total / n


class _Agg:
    """Base of the aggregating leaves."""

    __slots__ = ()

    def add(self, value: Any = 1) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __ilshift__(self, value: Any) -> Any:
        """``m[k] <<= v`` is ``m[k].add(v)``."""
        self.add(value)
        return self

    @property
    def value(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def sort_value(self) -> Any:
        """What top() and print() sort by."""
        return self.value

    def _merge(self, n: int, total: Any, lo: Any, hi: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _empty_like(self) -> Any:
        return type(self)()

    def _text(self) -> str:
        return _fmt(self.value)

    def __repr__(self) -> str:
        return f"{type(self).__name__.lower()}({self._text()})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Agg):
            return type(other) is type(self) and all(
                getattr(self, s) == getattr(other, s) for s in type(self).__slots__
            )
        return self.value == other

    __hash__ = None  # type: ignore[assignment]


class Count(_Agg):
    """Counts events: bpftrace's ``count()``.  ``c.add()`` counts one, ``c += n`` counts n."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def add(self, value: Any = None) -> None:
        self.n += 1

    def __iadd__(self, n: int) -> Count:
        self.n += n
        return self

    @property
    def value(self) -> int:
        return self.n

    def _merge(self, n: int, total: Any, lo: Any, hi: Any) -> None:
        self.n += n


class Sum(_Agg):
    """Sums values: bpftrace's ``sum()``.  ``Map(sum)`` makes one per key."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total: Any = 0

    def add(self, value: Any) -> None:
        self.total += value

    __iadd__ = _Agg.__ilshift__

    @property
    def value(self) -> Any:
        return self.total

    def _merge(self, n: int, total: Any, lo: Any, hi: Any) -> None:
        self.total += total


class Min(_Agg):
    """The smallest value seen (None before any): bpftrace's ``min()``.  ``Map(min)``."""

    __slots__ = ("min",)

    def __init__(self) -> None:
        self.min: Any = None

    def add(self, value: Any) -> None:
        if self.min is None or value < self.min:
            self.min = value

    @property
    def value(self) -> Any:
        return self.min

    @property
    def sort_value(self) -> Any:
        return float("-inf") if self.min is None else self.min

    def _merge(self, n: int, total: Any, lo: Any, hi: Any) -> None:
        self.add(lo)


class Max(_Agg):
    """The largest value seen (None before any): bpftrace's ``max()``.  ``Map(max)``."""

    __slots__ = ("max",)

    def __init__(self) -> None:
        self.max: Any = None

    def add(self, value: Any) -> None:
        if self.max is None or value > self.max:
            self.max = value

    @property
    def value(self) -> Any:
        return self.max

    @property
    def sort_value(self) -> Any:
        return float("-inf") if self.max is None else self.max

    def _merge(self, n: int, total: Any, lo: Any, hi: Any) -> None:
        self.add(hi)


class Avg(_Agg):
    """The mean of the values: bpftrace's ``avg()``.

    ``value`` is the exact mean (a float, None before any value); printing shows
    bpftrace's integer average when the values are integers.
    """

    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.n = 0
        self.total: Any = 0

    def add(self, value: Any) -> None:
        self.n += 1
        self.total += value

    @property
    def value(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def sort_value(self) -> float:
        return self.total / self.n if self.n else float("-inf")

    def _merge(self, n: int, total: Any, lo: Any, hi: Any) -> None:
        self.n += n
        self.total += total

    def _text(self) -> str:
        return _fmt(_c_div(self.total, self.n)) if self.n else "0"


class Stats(_Agg):
    """count, sum, min, max and avg of the values together: bpftrace's ``stats()``.

    Printed as bpftrace prints stats, with min and max after:
    ``count 3, average 2, total 6, min 1, max 3``.  Sorted by ``sum`` (the total,
    e.g. time spent), the most useful order for latencies.
    """

    __slots__ = ("n", "total", "min", "max")

    def __init__(self) -> None:
        self.n = 0
        self.total: Any = 0
        self.min: Any = None
        self.max: Any = None

    def add(self, value: Any) -> None:
        self.n += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    @property
    def count(self) -> int:
        return self.n

    @property
    def sum(self) -> Any:
        return self.total

    @property
    def avg(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def value(self) -> dict[str, Any]:
        return {"count": self.n, "sum": self.total, "min": self.min, "max": self.max, "avg": self.avg}

    @property
    def sort_value(self) -> Any:
        return self.total

    def _merge(self, n: int, total: Any, lo: Any, hi: Any) -> None:
        self.n += n
        self.total += total
        if self.min is None or lo < self.min:
            self.min = lo
        if self.max is None or hi > self.max:
            self.max = hi

    def _text(self) -> str:
        avg = _c_div(self.total, self.n) if self.n else 0
        return (
            f"count {self.n}, average {_fmt(avg)}, total {_fmt(self.total)}, "
            f"min {_fmt(self.min)}, max {_fmt(self.max)}"
        )


count = Count
avg = Avg
stats = Stats

_NAMED_LEAVES: dict[Any, Callable[[], Any]] = {
    builtins.sum: Sum,
    builtins.min: Min,
    builtins.max: Max,
    hist: Hist,
}


def _leaf_text(v: Any) -> str:
    return v._text() if isinstance(v, _Agg) else _fmt(v)


def _sort_value(v: Any) -> Any:
    if isinstance(v, (_Agg, _HistBase)):
        return v.sort_value
    if isinstance(v, (int, float)):
        return v
    try:
        return len(v)
    except TypeError:
        return 0


def _export(v: Any) -> Any:
    if isinstance(v, _Agg):
        return v.value
    if isinstance(v, _HistBase):
        return v.buckets()
    return v


def _key_text(k: Any) -> str:
    if isinstance(k, bytes):
        return k.decode("utf-8", "surrogateescape")
    return str(k)


# --------------------------------------------------------------------------- grouping


def _as_levels(keys: Any) -> list[np.ndarray]:
    if isinstance(keys, np.ndarray):
        return [keys]
    if isinstance(keys, (tuple, list)) and keys and all(
        isinstance(k, (np.ndarray, list, tuple)) for k in keys
    ):
        return [np.asarray(k) for k in keys]
    return [np.asarray(keys)]


def _py_keys(u: np.ndarray) -> list[Any]:
    out = u.tolist()
    if u.dtype.kind == "S":
        out = [b.decode("utf-8", "surrogateescape") for b in out]
    return out


#: integer keys whose combined range is at most this are grouped by counting, not sorting
_DENSE_RANGE = 1 << 24


def _dense_codes(levels: list[np.ndarray]) -> tuple[np.ndarray, list[int], list[int], int] | None:
    """One int64 code per row for integer keys of a small combined range (pids, syscall ids,
    CPUs), with each level's low value and span and the number of codes; None when the keys
    do not qualify."""
    if not levels or len(levels[0]) == 0 or any(lv.dtype.kind not in "iu" for lv in levels):
        return None
    lows, spans, total = [], [], 1
    for lv in levels:
        lo, hi = int(lv.min()), int(lv.max())
        if lo < -(1 << 63) or hi >= 1 << 63:
            return None
        lows.append(lo)
        spans.append(hi - lo + 1)
        total *= hi - lo + 1
        if total > _DENSE_RANGE:
            return None
    code = levels[0].astype(np.int64)  # a copy: updated in place below (no temporaries per level)
    code -= lows[0]
    for lv, lo, span in zip(levels[1:], lows[1:], spans[1:]):
        code *= span
        np.add(code, lv, out=code, casting="unsafe")  # any integer dtype; values fit (checked above)
        code -= lo
    return code, lows, spans, total


def _dense_paths(present: np.ndarray, lows: list[int], spans: list[int]) -> list[tuple[Any, ...]]:
    """The key paths of the codes in ``present`` (see ``_dense_codes``)."""
    digits = []
    rest = present
    for lo, span in zip(reversed(lows), reversed(spans)):
        digits.append((rest % span + lo).tolist())
        rest = rest // span
    digits.reverse()
    return list(zip(*digits))


def _group_dense(levels: list[np.ndarray]) -> tuple[list[tuple[Any, ...]], np.ndarray] | None:
    """``_group`` by counting instead of a sort per level; None when the keys do not qualify."""
    dense = _dense_codes(levels)
    if dense is None:
        return None
    code, lows, spans, total = dense
    present = np.flatnonzero(np.bincount(code, minlength=total))
    slot = np.empty(total, np.int64)
    slot[present] = np.arange(len(present))
    return _dense_paths(present, lows, spans), slot[code]


def _count_dense(levels: list[np.ndarray]) -> tuple[list[tuple[Any, ...]], list[int]] | None:
    """Distinct key paths and their row counts, by one counting pass; None when the keys
    do not qualify for ``_dense_codes``."""
    dense = _dense_codes(levels)
    if dense is None:
        return None
    code, lows, spans, total = dense
    counts = np.bincount(code, minlength=total)
    present = np.flatnonzero(counts)
    return _dense_paths(present, lows, spans), counts[present].tolist()


def _group(levels: list[np.ndarray]) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """Distinct key paths and, for each row, the index of its path."""
    n = len(levels[0])
    for lv in levels:
        if lv.ndim != 1 or len(lv) != n:
            raise ValueError("key arrays must be one-dimensional and of the same length")
    dense = _group_dense(levels)
    if dense is not None:
        return dense
    uniq: list[np.ndarray] = []
    invs: list[np.ndarray] = []
    for lv in levels:
        u, inv = np.unique(lv, return_inverse=True)
        uniq.append(u)
        invs.append(inv.astype(np.int64).ravel())
    if len(levels) == 1:
        return [(k,) for k in _py_keys(uniq[0])], invs[0]
    radix = 1
    for u in uniq:
        radix *= max(len(u), 1)
    if radix < (1 << 62):
        code = invs[0]
        for u, inv in zip(uniq[1:], invs[1:]):
            code = code * len(u) + inv
        ucode, inv = np.unique(code, return_inverse=True)
        digits = []
        rest = ucode
        for u in reversed(uniq[1:]):
            digits.append(rest % len(u))
            rest = rest // len(u)
        digits.append(rest)
        digits.reverse()
    else:  # pragma: no cover - astronomically many distinct keys
        rows, inv = np.unique(np.stack(invs, axis=1), axis=0, return_inverse=True)
        digits = [rows[:, i] for i in range(len(levels))]
    cols = [_py_keys(u[d]) for u, d in zip(uniq, digits)]
    return list(zip(*cols)), inv.astype(np.int64).ravel()


# --------------------------------------------------------------------------- Map


class _Pending:
    """``m[k]`` of a Map that has no entry yet, so its depth is unknown: it
    becomes a level when indexed, a leaf when updated."""

    __slots__ = ("_m", "_path")

    def __init__(self, m: Map, path: tuple[Any, ...]) -> None:
        self._m = m
        self._path = path

    def __getitem__(self, key: Any) -> Any:
        return self._m._view(self._path)[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._m._view(self._path)[key] = value

    def _leaf(self) -> Any:
        m = self._m
        leaf = m._factory()
        m._store(self._path, leaf)
        return leaf

    def _inplace(op: Callable[[Any, Any], Any]) -> Any:  # type: ignore[misc]
        def method(self: _Pending, other: Any) -> Any:
            m = self._m
            if m._mutable:
                return op(self._leaf(), other)
            return op(m._default, other)

        return method

    __iadd__ = _inplace(operator.iadd)
    __isub__ = _inplace(operator.isub)
    __imul__ = _inplace(operator.imul)
    __itruediv__ = _inplace(operator.itruediv)
    __ifloordiv__ = _inplace(operator.ifloordiv)
    __ior__ = _inplace(operator.ior)
    __iand__ = _inplace(operator.iand)
    __ixor__ = _inplace(operator.ixor)
    __ilshift__ = _inplace(operator.ilshift)
    del _inplace

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._leaf(), name)

    def _value(self) -> Any:
        m = self._m
        return m._default if not m._mutable else m._factory()

    def __repr__(self) -> str:
        return repr(self._value())

    def __eq__(self, other: object) -> bool:
        return bool(self._value() == other)

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return bool(self._value())

    def __int__(self) -> int:
        return int(self._value())

    def __float__(self) -> float:
        return float(self._value())


class Map:
    """An autovivifying nested map of counters or aggregates.

        calls = Map(int, name="calls")
        calls[comm][sysid] += 1          # or calls[comm, sysid] += 1
        calls.print(top=10)              # @calls[bash, 1]: 42
        for (comm, sysid), n in calls.top(5): ...

    ``leaf`` says what each entry holds (see the module docstring): ``int``,
    ``float``, ``count``, ``sum``, ``min``, ``max``, ``avg``, ``stats``,
    ``hist``, ``lhist(min, max, step)`` or any callable making a new value.
    ``name`` is the map's name in printed output (``@name[...]``).
    """

    __slots__ = ("_root", "_prefix", "_data", "_factory", "_mutable", "_default", "_depth", "name")

    def __init__(self, leaf: Any = int, *, name: str = "") -> None:
        self._root = self
        self._prefix: tuple[Any, ...] = ()
        self._data: dict[tuple[Any, ...], Any] = {}
        self._depth: int | None = None
        self.name = name
        factory: Callable[[], Any]
        try:
            named = _NAMED_LEAVES.get(leaf)
        except TypeError:  # an unhashable callable
            named = None
        if isinstance(leaf, (_Agg, _HistBase)):
            factory = leaf._empty_like
        elif named is not None:
            factory = named
        elif leaf is lhist or leaf is LHist:
            raise TypeError("lhist needs its bounds: Map(lhist(min, max, step))")
        elif callable(leaf):
            factory = leaf
        else:
            raise TypeError(f"Map leaf must be a type or a callable, not {leaf!r}")
        sample = factory()
        self._factory = factory
        self._mutable = not isinstance(sample, (int, float, complex, str, bytes, tuple, frozenset, type(None)))
        self._default = None if self._mutable else sample

    # -- internals
    def _view(self, prefix: tuple[Any, ...]) -> Map:
        v = object.__new__(Map)
        v._root = self._root
        v._prefix = prefix
        return v

    def _store(self, path: tuple[Any, ...], value: Any) -> None:
        root = self._root
        d = root._depth
        if d is None:
            root._depth = len(path)
        elif len(path) != d:
            raise KeyError(f"this Map has {d} key level{'s' if d != 1 else ''}; got {len(path)}: {path!r}")
        root._data[path] = value

    def _entries(self) -> list[tuple[tuple[Any, ...], Any]]:
        """(key below this view, leaf) for every leaf under this view."""
        data = self._root._data
        p = self._prefix
        if not p:
            return list(data.items())
        n = len(p)
        return [(k[n:], v) for k, v in data.items() if k[:n] == p]

    # -- mapping protocol
    def __getitem__(self, key: Any) -> Any:
        root = self._root
        path = self._prefix + (key if type(key) is tuple else (key,))
        d = root._depth
        if d is None:
            return _Pending(root, path)
        n = len(path)
        if n == d:
            try:
                return root._data[path]
            except KeyError:
                if root._mutable:
                    leaf = root._data[path] = root._factory()
                    return leaf
                return root._default
        if n < d:
            return self._view(path)
        raise KeyError(f"this Map has {d} key level{'s' if d != 1 else ''}; got {n}: {path!r}")

    def __setitem__(self, key: Any, value: Any) -> None:
        path = self._prefix + (key if type(key) is tuple else (key,))
        root = self._root
        if root._depth == len(path):
            root._data[path] = value
        else:
            self._store(path, value)

    def __delitem__(self, key: Any) -> None:
        path = self._prefix + (key if type(key) is tuple else (key,))
        data = self._root._data
        if path in data:
            del data[path]
            return
        n = len(path)
        doomed = [k for k in data if k[:n] == path]
        if not doomed:
            raise KeyError(key)
        for k in doomed:
            del data[k]

    def __contains__(self, key: Any) -> bool:
        path = self._prefix + (key if type(key) is tuple else (key,))
        data = self._root._data
        if path in data:
            return True
        n = len(path)
        d = self._root._depth
        return d is not None and n < d and any(k[:n] == path for k in data)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter([k for k, _ in self._entries()])

    def __len__(self) -> int:
        if not self._prefix:
            return len(self._data)
        return len(self._entries())

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iadd__(self, other: Any) -> Any:
        raise TypeError(
            f"this Map has {self._root._depth} key levels; index it with "
            f"{self._root._depth - len(self._prefix)} more key(s) before updating"
        )

    def __repr__(self) -> str:
        label = f"@{self._root.name}" if self._root.name else "Map"
        where = f"[{', '.join(map(_key_text, self._prefix))}]" if self._prefix else ""
        return f"<{label}{where}: {len(self)} entries>"

    def keys(self) -> list[tuple[Any, ...]]:
        """Every leaf's key as a tuple."""
        return [k for k, _ in self._entries()]

    def values(self) -> list[Any]:
        """Every leaf."""
        return [v for _, v in self._entries()]

    def items(self) -> list[tuple[tuple[Any, ...], Any]]:
        """``(key tuple, leaf)`` for every leaf, flattened: ``(('bash', 1), 42)``."""
        return self._entries()

    def get(self, key: Any, default: Any = None) -> Any:
        """The leaf at a full key, or ``default`` (never creates an entry)."""
        path = self._prefix + (key if type(key) is tuple else (key,))
        return self._root._data.get(path, default)

    @property
    def depth(self) -> int | None:
        """The number of key levels below this map or view (None while empty)."""
        d = self._root._depth
        return None if d is None else d - len(self._prefix)

    def clear(self) -> None:
        """Remove every entry (of this view only, for a view)."""
        if not self._prefix:
            self._data.clear()
            self._depth = None
            return
        data = self._root._data
        n = len(self._prefix)
        for k in [k for k in data if k[:n] == self._prefix]:
            del data[k]

    # -- ordering
    def top(self, n: int = 10, key: Callable[[Any], Any] | None = None) -> list[tuple[tuple[Any, ...], Any]]:
        """The ``n`` largest entries, largest first, as ``(key tuple, leaf)``.

        Numbers sort by value, aggregates by their ``sort_value`` (count, sum,
        min, max, avg; stats by sum), histograms by their count.  ``key`` maps
        a leaf to another sort value.
        """
        f = key or _sort_value
        return heapq.nlargest(n, self._entries(), key=lambda kv: f(kv[1]))

    def sorted(self, by: str = "value", reverse: bool = False) -> list[tuple[tuple[Any, ...], Any]]:
        """All entries sorted ``by="value"`` (as top() ranks them) or ``by="key"``,
        smallest first (bpftrace's print order) unless ``reverse``."""
        entries = self._entries()
        if by == "value":
            return sorted(entries, key=lambda kv: _sort_value(kv[1]), reverse=reverse)
        if by == "key":
            try:
                return sorted(entries, key=lambda kv: kv[0], reverse=reverse)
            except TypeError:
                return sorted(entries, key=lambda kv: tuple(map(str, kv[0])), reverse=reverse)
        raise ValueError(f"sorted(by={by!r}): use 'value' or 'key'")

    def to_dict(self) -> dict[Any, Any]:
        """Plain nested dicts (one level per key level); aggregates become their
        ``value``, histograms their ``buckets()``."""
        out: dict[Any, Any] = {}
        for k, v in self._entries():
            d = out
            for part in k[:-1]:
                d = d.setdefault(part, {})
            d[k[-1]] = _export(v)
        return out

    # -- batches
    def add_counts(self, keys: Any, counts: Any = None) -> None:
        """Count rows per key from numpy arrays, with no Python loop over rows.

            m.add_counts(b.common_pid)                 # one per row
            m.add_counts((b.common_comm, b.id))        # two key levels
            m.add_counts(uniq_keys, their_counts)      # counted already

        ``keys`` is one array or a tuple of arrays (one per key level); byte
        strings become ``str``.  For ``Map(int)``, ``Map(float)`` and
        ``Map(count)``; ``update_from_arrays`` feeds values to other leaves.
        """
        root = self._root
        if root._mutable and root._factory is not Count:
            raise TypeError("add_counts needs Map(int), Map(float) or Map(count); use update_from_arrays")
        levels = _as_levels(keys)
        if len(levels[0]) == 0:
            return
        if counts is None:
            counted = _count_dense(levels)
            if counted is None:
                paths, inv = _group(levels)
                per = np.bincount(inv, minlength=len(paths)).tolist()
            else:
                paths, per = counted
        else:
            paths, inv = _group(levels)
            c = np.asarray(counts)
            if c.shape != inv.shape:
                raise ValueError("counts must have one element per key row")
            order = np.argsort(inv, kind="stable")
            starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
            per = np.add.reduceat(c[order], starts).tolist()
        self._apply(paths, per)

    def _apply(self, paths: list[tuple[Any, ...]], per: list[Any]) -> None:
        root = self._root
        data = root._data
        p = self._prefix
        if root._mutable:  # Count
            for path, c in zip(paths, per):
                full = p + path
                leaf = data.get(full)
                if leaf is None:
                    leaf = root._factory()
                    self._store(full, leaf)
                leaf.n += c
            return
        default = root._default
        for path, c in zip(paths, per):
            full = p + path
            if full in data:
                data[full] += c
            else:
                self._store(full, default + c)

    def update_from_arrays(self, keys: Any, values: Any) -> None:
        """Feed ``values[i]`` to the leaf at ``keys[i]`` for every row, grouped
        with numpy (a Python loop runs per distinct key, not per row).

            lat = Map(stats)
            lat.update_from_arrays((b.common_comm, b.id), durations)
            dist = Map(hist)
            dist.update_from_arrays(b.common_comm, durations)

        Numbers (``Map(int)``) get the sum of their values added.
        """
        levels = _as_levels(keys)
        vals = np.asarray(values)
        if vals.ndim != 1 or len(vals) != len(levels[0]):
            raise ValueError("values must be one-dimensional, one per key row")
        if len(vals) == 0:
            return
        paths, inv = _group(levels)
        order = np.argsort(inv, kind="stable")
        vs = vals[order]
        starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
        root = self._root
        if not root._mutable:
            self._apply(paths, np.add.reduceat(vs, starts).tolist())
            return
        sample = root._factory()
        data = root._data
        p = self._prefix
        ends = np.r_[starts[1:], len(vs)]

        def leaf_at(path: tuple[Any, ...]) -> Any:
            full = p + path
            leaf = data.get(full)
            if leaf is None:
                leaf = root._factory()
                self._store(full, leaf)
            return leaf

        if isinstance(sample, _Agg):
            ns = (ends - starts).tolist()
            sums = np.add.reduceat(vs, starts).tolist()
            los = np.minimum.reduceat(vs, starts).tolist()
            his = np.maximum.reduceat(vs, starts).tolist()
            for i, path in enumerate(paths):
                leaf_at(path)._merge(ns[i], sums[i], los[i], his[i])
        elif isinstance(sample, _HistBase):
            for path, s, e in zip(paths, starts.tolist(), ends.tolist()):
                leaf_at(path).add_many(vs[s:e])
        else:
            for path, s, e in zip(paths, starts.tolist(), ends.tolist()):
                leaf = leaf_at(path)
                for v in vs[s:e].tolist():
                    leaf.add(v) if hasattr(leaf, "add") else leaf.append(v)

    # -- printing
    def format(
        self,
        top: int | None = None,
        title: str | None = None,
        style: str = "bpftrace",
        headers: Sequence[str] | None = None,
        val_type: str = "value",
    ) -> str:
        """The map as text; see :meth:`print`."""
        entries = self.sorted()  # smallest first, as bpftrace prints
        if top is not None:
            # the last `top` (largest); fewer entries than that: all of them
            entries = entries[max(0, len(entries) - top) :] if top > 0 else []
        out: list[str] = []
        if title is not None:
            out.append(f"{title}\n")
        if style == "bpftrace":
            name = "@" + self._root.name
            p = self._prefix
            for k, v in entries:
                label = f"{name}[{', '.join(map(_key_text, p + k))}]:"
                if isinstance(v, _HistBase):
                    out.append(f"{label}\n{v.format()}\n")
                else:
                    out.append(f"{label} {_leaf_text(v)}\n")
        elif style == "table":
            entries.reverse()  # largest first
            out.append(self._table(entries, headers, val_type))
        else:
            raise ValueError(f"unknown Map print style {style!r} (bpftrace, table)")
        return "".join(out)

    def _table(self, entries: list[tuple[tuple[Any, ...], Any]], headers: Sequence[str] | None, val_type: str) -> str:
        if not entries:
            return ""
        nkeys = len(entries[0][0])
        if entries and isinstance(entries[0][1], _HistBase):
            names = list(headers or ())[:nkeys] or ["key"]
            out = []
            for k, v in entries:
                keytext = ", ".join(map(_key_text, k))
                out.append(f"\n{', '.join(names)} = {keytext}\n{v.format('bcc', val_type)}")
            return "".join(out)
        rows = [[_key_text(x) for x in k] + [_leaf_text(v)] for k, v in entries]
        right = [isinstance(x, (int, float)) for x in entries[0][0]] + [True]
        hdr = list(headers) if headers else None
        if hdr is not None and len(hdr) != nkeys + 1:
            raise ValueError(f"headers needs {nkeys + 1} names: one per key level and one for the value")
        table = ([hdr] if hdr else []) + rows
        widths = [max(len(r[i]) for r in table) for i in range(nkeys + 1)]
        lines = []
        for r in table:
            cells = [c.rjust(w) if right[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
            lines.append("  ".join(cells).rstrip() + "\n")
        return "".join(lines)

    def print(
        self,
        top: int | None = None,
        title: str | None = None,
        file: IO[str] | None = None,
        style: str = "bpftrace",
        headers: Sequence[str] | None = None,
        val_type: str = "value",
    ) -> None:
        """Print the map.

        ``style="bpftrace"`` (default) prints as bpftrace prints a map: one line
        ``@name[key1, key2]: value`` per entry, smallest first so the largest
        ends next to the prompt; a histogram leaf prints ``@name[key]:``, its
        rows and a blank line.  ``style="table"`` prints aligned columns, largest
        first, with optional ``headers`` (one per key level plus the value);
        histogram leaves then print in bcc's style with ``val_type``.
        ``top=N`` keeps the N largest entries; ``title`` is printed first.
        """
        (file or sys.stdout).write(self.format(top, title, style, headers, val_type))

