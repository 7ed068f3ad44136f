"""Power-of-2 and linear histograms, printed the way bpftrace and bcc print them.

``hist()`` is bpftrace's ``hist()``: one bucket for negative values, one for 0,
one for 1, then ``[2, 4)``, ``[4, 8)`` ... up to ``[8E, 16E)``.  ``lhist(min,
max, step)`` is bpftrace's ``lhist()``: ``(..., min)``, ``[min, min+step)`` ...
``[max, ...)``.  Both are usable alone or as :class:`~.aggregations.Map`
leaves (``Map(hist)``, ``Map(lhist(0, 100, 10))``)::

    h = hist()
    h.add(1500)                       # one value
    h <<= 1500                        # the same, as an operator
    h.add_many(batch.duration)        # a numpy array, vectorised
    h.print()                         # bpftrace's format
    h.print(style="bcc", val_type="nsecs")   # bcc's print_log2_hist format

bpftrace's format (from its ``TextOutput::hist_to_str``): rows from the first
to the last non-empty bucket, the label left-aligned in 16 columns, the count
right-aligned in 8, then a 52-column bar of ``@`` scaled to the largest
bucket (computed in single precision, as bpftrace does)::

    [4, 8)                12 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

bcc's format (``print_log2_hist``) shows ``low -> high`` ranges from ``0 -> 1``
up to the last non-empty slot with a 40-column bar of ``*``; it has no bucket
for negative values, which it leaves out.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import numpy as np

__all__ = ["Hist", "LHist", "hist", "lhist"]

_LOG2_SLOTS = 66  # negative, 0, then bit lengths 1..64
_BAR_WIDTH = 52  # bpftrace
_STARS_MAX = 40  # bcc


# --------------------------------------------------------------------------- labels


def _log2_label(power: int) -> str:
    """2**power with bpftrace's suffixes: 1K, 2M, 4G, 8T, 16P, 8E."""
    for limit, suffix in ((60, "E"), (50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if power >= limit:
            return f"{1 << (power - limit)}{suffix}"
    return str(1 << power)


def _bpftrace_rows(labels: list[str], counts: list[int]) -> str:
    top = np.float32(max(counts))
    width = np.float32(_BAR_WIDTH)
    out = []
    for label, n in zip(labels, counts):
        bar = "@" * int(np.float32(n) / top * width) if top else ""
        out.append(f"{label:<16}{n:>8} |{bar:<{_BAR_WIDTH}}|\n")
    return "".join(out)


def _stars(val: int, val_max: int, width: int) -> str:
    # bcc's _stars(): a bar of '*', '+' at the end when val exceeds val_max
    i = 0
    text = ""
    while True:
        if i > (width * val / val_max) - 1 or i > width - 1:
            break
        text += "*"
        i += 1
    if val > val_max:
        text = text[:-1] + "+"
    return text


def _bit_length_u64(x: np.ndarray) -> np.ndarray:
    """Exact bit length of each element of a uint64 array (0 for 0)."""
    x = x.astype(np.uint64, copy=True)
    n = np.zeros(x.shape, np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        big = x >= np.uint64(1 << s)
        n += big * s
        x = np.where(big, x >> np.uint64(s), x)
    return n + (x > 0)


class _HistBase:
    """What hist() and lhist() share: printing, totals, merging."""

    __slots__ = ("_b",)
    _b: list[int]

    # -- subclasses provide
    def _labels(self, lo: int, hi: int) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _bcc(self, val_type: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _empty_like(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def add(self, value: float, n: int = 1) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared
    def __ilshift__(self, value: float) -> Any:
        """``h <<= v`` is ``h.add(v)``."""
        self.add(value)
        return self

    @property
    def count(self) -> int:
        """How many values were added."""
        return sum(self._b)

    @property
    def sort_value(self) -> int:
        """What Map.top() and Map.print() sort histograms by: the count, as bpftrace does."""
        return sum(self._b)

    @property
    def counts(self) -> list[int]:
        """The raw bucket counts (a copy), underflow/negative bucket first."""
        return list(self._b)

    def _range(self) -> tuple[int, int] | None:
        nz = [i for i, n in enumerate(self._b) if n]
        return (nz[0], nz[-1]) if nz else None

    def merge(self, other: Any) -> None:
        """Add the counts of another histogram of the same kind and shape."""
        if type(other) is not type(self) or len(other._b) != len(self._b) or (
            isinstance(self, LHist) and (self.min, self.max, self.step) != (other.min, other.max, other.step)
        ):
            raise ValueError("can only merge histograms of the same kind and buckets")
        b = self._b
        for i, n in enumerate(other._b):
            b[i] += n

    def clear(self) -> None:
        """Set every bucket back to zero."""
        self._b = [0] * len(self._b)

    def format(self, style: str = "bpftrace", val_type: str = "value") -> str:
        """The histogram as text: ``style="bpftrace"`` (default) or ``"bcc"``.

        ``val_type`` names the values in bcc's header (``usecs``, ``bytes``).
        An empty histogram is an empty string.
        """
        if style == "bcc":
            return self._bcc(val_type)
        if style != "bpftrace":
            raise ValueError(f"unknown histogram style {style!r} (bpftrace, bcc)")
        r = self._range()
        if r is None:
            return ""
        lo, hi = r
        return _bpftrace_rows(self._labels(lo, hi), self._b[lo : hi + 1])

    def print(self, file: IO[str] | None = None, style: str = "bpftrace", val_type: str = "value") -> None:
        """Print :meth:`format` to ``file`` (standard output by default)."""
        (file or sys.stdout).write(self.format(style, val_type))

    def __str__(self) -> str:
        return self.format()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._b == self._b and self._shape() == other._shape()  # type: ignore[attr-defined]

    def _shape(self) -> tuple[int, ...]:
        return ()

    __hash__ = None  # type: ignore[assignment]


class Hist(_HistBase):
    """A power-of-2 histogram: bpftrace's ``hist()``.

    Buckets: negative values, 0, 1, ``[2, 4)``, ``[4, 8)``, ... ``[8E, 16E)``.
    Floats are rounded down; values of 2**64 and above land in the last bucket.

        lat = hist()
        lat.add(ns)                  # or lat <<= ns
        lat.add_many(durations)      # numpy array, no Python loop
        lat.print()
    """

    __slots__ = ()

    def __init__(self) -> None:
        self._b = [0] * _LOG2_SLOTS

    def _empty_like(self) -> Hist:
        return Hist()

    def add(self, value: float, n: int = 1) -> None:
        """Count ``value`` (``n`` times)."""
        if not value > 0:
            if value < 0:
                self._b[0] += n
            elif value == 0:
                self._b[1] += n
            return  # NaN is neither: ignored
        v = int(value)
        self._b[v.bit_length() + 1 if v >> 64 == 0 else _LOG2_SLOTS - 1] += n

    def add_many(self, values: Any) -> None:
        """Count every element of a numpy array (ints or floats) in one pass."""
        a = np.asarray(values)
        if a.size == 0:
            return
        a = a.ravel()
        kind = a.dtype.kind
        if kind == "b":
            a = a.astype(np.int64)
            kind = "i"
        if kind in "iu":
            neg = int(np.count_nonzero(a < 0)) if kind == "i" else 0
            zero = int(np.count_nonzero(a == 0))
            pos = a[a > 0].astype(np.uint64)
            bl = _bit_length_u64(pos)
        elif kind == "f":
            neg = int(np.count_nonzero(a < 0))
            x = np.floor(a[a >= 0])  # drops NaN too
            zero = int(np.count_nonzero(x < 1))
            pos = x[x >= 1]
            bl = np.minimum(np.frexp(pos)[1].astype(np.int64), 64)
        else:
            raise TypeError(f"hist.add_many needs numbers, not {a.dtype}")
        slots = np.bincount(bl + 1, minlength=_LOG2_SLOTS)
        b = self._b
        b[0] += neg
        b[1] += zero
        for i, n in enumerate(slots[2:].tolist(), 2):
            if n:
                b[i] += n

    def buckets(self) -> list[tuple[int | None, int, int]]:
        """``(low, high, count)`` for the printed range, high exclusive; the
        negative bucket is ``(None, 0, count)``."""
        r = self._range()
        if r is None:
            return []
        out: list[tuple[int | None, int, int]] = []
        for i in range(r[0], r[1] + 1):
            if i == 0:
                out.append((None, 0, self._b[0]))
            elif i == 1:
                out.append((0, 1, self._b[1]))
            else:
                out.append((1 << (i - 2), 1 << (i - 1), self._b[i]))
        return out

    def _labels(self, lo: int, hi: int) -> list[str]:
        labels = []
        for i in range(lo, hi + 1):
            if i == 0:
                labels.append("(..., 0)")
            elif i == 1:
                labels.append("[0]")
            elif i == 2:
                labels.append("[1]")
            else:
                labels.append(f"[{_log2_label(i - 2)}, {_log2_label(i - 1)})")
        return labels

    def _bcc(self, val_type: str) -> str:
        # bcc's slot i holds [2**(i-1), 2**i - 1]; slot 1 holds 0 and 1.
        b = self._b
        vals = [0, b[1] + b[2]] + b[3:]
        idx_max = max((i for i, v in enumerate(vals) if v > 0), default=-1)
        val_max = max(vals)
        if idx_max <= 32:
            header = "     %-19s : count     distribution\n"
            body = "%10d -> %-10d : %-8d |%-*s|\n"
            stars = _STARS_MAX
        else:
            header = "               %-29s : count     distribution\n"
            body = "%20d -> %-20d : %-8d |%-*s|\n"
            stars = _STARS_MAX // 2
        out = []
        if idx_max > 0:
            out.append(header % val_type)
        for i in range(1, idx_max + 1):
            low = (1 << i) >> 1
            high = (1 << i) - 1
            if low == high:
                low -= 1
            out.append(body % (low, high, vals[i], stars, _stars(vals[i], val_max, stars)))
        return "".join(out)


class LHist(_HistBase):
    """A linear histogram: bpftrace's ``lhist(min, max, step)``.

    Buckets: ``(..., min)``, ``[min, min+step)``, ... and ``[max, ...)`` (a
    value equal to ``max`` goes there, as in bpftrace).  Labels use K and M
    suffixes only when every bucket boundary can be written with one.

        size = lhist(0, 4096, 512)
        size.add(1000)
        size.add_many(batch.bytes_alloc)
    """

    __slots__ = ("min", "max", "step", "_nb")

    def __init__(self, min: int, max: int, step: int) -> None:  # noqa: A002 - bpftrace's words
        for name, v in (("min", min), ("max", max), ("step", step)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise TypeError(f"lhist {name} must be an integer, not {v!r}")
        if step <= 0:
            raise ValueError("lhist step must be positive")
        if max <= min:
            raise ValueError("lhist max must be greater than min")
        self.min, self.max, self.step = int(min), int(max), int(step)
        self._nb = (self.max - self.min) // self.step
        self._b = [0] * (self._nb + 2)

    def _shape(self) -> tuple[int, ...]:
        return (self.min, self.max, self.step)

    def _empty_like(self) -> LHist:
        return LHist(self.min, self.max, self.step)

    def add(self, value: float, n: int = 1) -> None:
        """Count ``value`` (``n`` times)."""
        if value < self.min:
            i = 0
        elif value > self.max:
            i = self._nb + 1
        elif value >= self.min:
            i = 1 + int((value - self.min) // self.step)
            if i > self._nb + 1:
                i = self._nb + 1
        else:
            return  # NaN
        self._b[i] += n

    def add_many(self, values: Any) -> None:
        """Count every element of a numpy array (ints or floats) in one pass."""
        a = np.asarray(values).ravel()
        if a.size == 0:
            return
        if a.dtype.kind == "f":
            a = np.floor(a[~np.isnan(a)])
        elif a.dtype.kind not in "iub":
            raise TypeError(f"lhist.add_many needs numbers, not {a.dtype}")
        # clip into [min-1, max+1] first so the arithmetic below cannot overflow
        lo, hi = self.min - 1, self.max + 1
        if a.dtype.kind == "u":
            a = np.minimum(a, np.uint64(hi) if hi >= 0 else np.uint64(0)).astype(np.int64)
            a = np.maximum(a, lo)
        else:
            a = np.clip(a, lo, hi).astype(np.int64)
        idx = np.where(a < self.min, 0, np.minimum(1 + (a - self.min) // self.step, self._nb + 1))
        idx = np.where(a > self.max, self._nb + 1, idx)
        slots = np.bincount(idx, minlength=self._nb + 2).tolist()
        b = self._b
        for i, n in enumerate(slots):
            if n:
                b[i] += n

    def buckets(self) -> list[tuple[int | None, int | None, int]]:
        """``(low, high, count)`` for the printed range, high exclusive; the
        underflow bucket is ``(None, min, count)``, the overflow ``(max, None, count)``."""
        r = self._range()
        if r is None:
            return []
        out: list[tuple[int | None, int | None, int]] = []
        for i in range(r[0], r[1] + 1):
            if i == 0:
                out.append((None, self.min, self._b[0]))
            elif i == self._nb + 1:
                out.append((self.max, None, self._b[i]))
            else:
                lo = self.min + (i - 1) * self.step
                out.append((lo, lo + self.step, self._b[i]))
        return out

    def _label_fn(self) -> Any:
        bounds = [self.min + i * self.step for i in range(self._nb + 1)] + [self.max]
        if all(b % 1024 == 0 for b in bounds):

            def label(n: int) -> str:
                if n == 0:
                    return "0"
                if n % (1 << 20) == 0:
                    return f"{n >> 20}M"
                return f"{n >> 10}K"

            return label
        return str

    def _labels(self, lo: int, hi: int) -> list[str]:
        lab = self._label_fn()
        labels = []
        for i in range(lo, hi + 1):
            if i == 0:
                labels.append(f"(..., {lab(self.min)})")
            elif i == self._nb + 1:
                labels.append(f"[{lab(self.max)}, ...)")
            else:
                a = self.min + (i - 1) * self.step
                b = a + self.step
                labels.append(f"[{lab(a)}]" if b == a + 1 and lab is str else f"[{lab(a)}, {lab(b)})")
        return labels

    def _bcc(self, val_type: str) -> str:
        # bcc's print_linear_hist: one row per in-range bucket, labelled by its
        # lower bound, up to the last non-empty one; no rows for under/overflow.
        vals = self._b[1 : self._nb + 1]
        idx_max = max((i for i, v in enumerate(vals) if v > 0), default=-1)
        val_max = max(vals, default=0)
        if idx_max < 0:
            return ""
        out = ["     %-13s : count     distribution\n" % val_type]
        for i in range(idx_max + 1):
            out.append(
                "        %-13d : %-8d |%-*s|\n"
                % (self.min + i * self.step, vals[i], _STARS_MAX, _stars(vals[i], val_max, _STARS_MAX))
            )
        return "".join(out)


def hist() -> Hist:
    """A new power-of-2 histogram (bpftrace's ``hist()``); ``Map(hist)`` makes one per key."""
    return Hist()


def lhist(min: int, max: int, step: int) -> LHist:  # noqa: A002 - bpftrace's words
    """A new linear histogram (bpftrace's ``lhist()``); ``Map(lhist(0, 100, 10))`` makes one per key."""
    return LHist(min, max, step)
