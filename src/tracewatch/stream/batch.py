"""Columnar batches of events of one type, and the per-event objects built from them.

An :class:`EventBatch` holds the events of one event type from one stretch of a
trace, in time order, as numpy columns named after the kernel's fields
(``b.id``, ``b.prev_pid``) plus the metadata columns ``common_ts`` (ns),
``common_cpu`` and ``common_comm``.  The fixed-size part of every record is
gathered once into an (N, width) byte matrix; each numeric column is a view
of it through a structured dtype, made contiguous when first asked for.
Strings and dynamic arrays are decoded only when asked for.

:class:`Event` objects, for per-event handlers, are tuples built from the
columns' ``tolist()`` in bulk; fields are read-only attributes.  Their own
methods end in ``_`` (as drgn does) so that they never hide a kernel field
(``sched_wakeup`` has a ``pid``, ``task_newtask`` a ``comm``).
"""

from __future__ import annotations

import gc
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
from numba import njit

from ..formats.event_format import EventFormat, Field

if TYPE_CHECKING:
    from ..formats.symbols import TraceSymbols

__all__ = ["EventBatch", "Event", "TraceContext", "METADATA"]

#: Names tracewatch adds to every event; none is a kernel field name.
METADATA = ("common_ts", "common_cpu", "common_comm")

_SCALAR_KIND = {(1, True): "i1", (1, False): "u1", (2, True): "i2", (2, False): "u2",
                (4, True): "i4", (4, False): "u4", (8, True): "i8", (8, False): "u8"}


class TraceContext:
    """What events of one trace share: formats, symbols, comm lookup, report text.

    One per source (a trace.dat file or a live session).  ``line_renderer`` is
    built on first use and makes ``str(event)`` the ``tracewatch report`` line.
    """

    def __init__(self, formats: dict[int, EventFormat], symbols: "TraceSymbols") -> None:
        self.formats = formats
        self.symbols = symbols
        self._report: Any = None
        self._event_classes: dict[int, type] = {}

    def comm(self, pid: int) -> str:
        """The command name of ``pid`` as trace-cmd shows it (``<idle>`` for 0, ``<...>`` unknown)."""
        if pid == 0:
            return "<idle>"
        return self.symbols.cmdlines.by_pid.get(pid, "<...>")

    def remember_comm(self, pid: int, comm: str) -> None:
        """Record a comm learnt from the stream (live: sched events, /proc)."""
        self.symbols.cmdlines.by_pid[pid] = comm

    def report_line(self, cpu: int, ts: int, payload: bytes, fmt: EventFormat | None) -> str:
        if self._report is None:
            from ..export.report_text import ReportFormatter

            self._report = ReportFormatter(self.symbols, self.formats)
        return self._report.line(cpu, ts, payload, fmt)

    def event_class(self, fmt: EventFormat) -> type:
        cls = self._event_classes.get(fmt.id)
        if cls is None:
            cls = _make_event_class(fmt, self)
            self._event_classes[fmt.id] = cls
        return cls


class Event(tuple):
    """One event: fields by their kernel names, plus ``common_ts`` (ns),
    ``common_cpu``, ``common_pid`` and ``common_comm``.

    ``str(ev)`` is the line ``tracewatch report`` prints for it.  Methods end in
    ``_``: ``name_``, ``system_``, ``format_``, ``as_dict_()``, ``payload_()``.
    """

    __slots__ = ()
    format_: EventFormat
    _context: TraceContext
    _names: tuple[str, ...]
    _lazy: tuple[str, ...]

    @property
    def name_(self) -> str:
        return self.format_.name

    @property
    def system_(self) -> str:
        return self.format_.system

    def as_dict_(self) -> dict[str, Any]:
        """Every field and metadata value by name."""
        d = {name: getattr(self, name) for name in self._names}
        d["common_comm"] = self.common_comm  # type: ignore[attr-defined]
        return d

    def payload_(self) -> bytes:
        """The raw record bytes (starting at ``common_type``)."""
        batch, i = self[-2], self[-1]
        return batch.payload_(i)

    def __str__(self) -> str:
        batch, i = self[-2], self[-1]
        return batch.report_line_(i)

    def __repr__(self) -> str:
        fields = " ".join(f"{k}={getattr(self, k)!r}" for k in self._names if not k.startswith("common_")
                          or k in ("common_pid", "common_ts", "common_cpu"))
        return f"<{self.format_.system}:{self.format_.name} {fields}>"

    # Events compare as the records they are, not as tuples of values
    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = object.__hash__


#: fields an Event carries in its tuple; the rest (strings, arrays, the rarely
#: read common_type/flags/preempt_count) are read from the batch on first access
def _eager(f: Field) -> bool:
    return not f.is_array and f.size in (1, 2, 4, 8) and f.name not in _LAZY_COMMON


_LAZY_COMMON = frozenset({"common_type", "common_flags", "common_preempt_count"})


def _make_event_class(fmt: EventFormat, context: TraceContext) -> type:
    names = tuple(f.name for f in fmt.fields) + ("common_ts", "common_cpu")
    lazy = tuple(f.name for f in fmt.fields if not _eager(f))
    ns: dict[str, Any] = {"__slots__": (), "format_": fmt, "_context": context, "_names": names, "_lazy": lazy}
    for i, name in enumerate(names):
        if name in lazy:
            ns[name] = property(_lazy_getter(name), doc=f"field {name}")
        else:
            ns[name] = property(itemgetter(i), doc=f"field {name}")
    pid_i = names.index("common_pid") if "common_pid" in names else None
    if pid_i is not None:
        getter = itemgetter(pid_i)
        comm = context.comm
        ns["common_comm"] = property(lambda self: comm(getter(self)), doc="command name of common_pid")
    return type(f"{fmt.system}_{fmt.name}", (Event,), ns)


def _lazy_getter(name: str) -> Callable[[Event], Any]:
    """Read field ``name`` of an Event from its batch's column (decoded once per batch)."""

    def get(self: Event) -> Any:
        value = self[-2].column_(name)[self[-1]]
        return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value

    return get


class EventBatch:
    """Events of one type, in time order, as numpy columns.

    ``len(b)`` events; ``b.FIELD`` (or ``b["FIELD"]``) is a numpy array: ints
    for scalars (dtype as the kernel declares), 2-D arrays for fixed numeric
    arrays, object arrays of ``str`` for strings, object arrays of lists for
    dynamic numeric arrays.  Metadata: ``common_ts`` (int64 ns), ``common_cpu``
    (int32), ``common_pid``, ``common_comm`` (object array of str).
    Methods end in ``_`` so they never hide a field: ``format_``, ``column_``,
    ``events_()``, ``payload_(i)``.
    """

    def __init__(
        self,
        fmt: EventFormat,
        context: TraceContext,
        buffers: Sequence[np.ndarray],
        cpu: np.ndarray,
        ts: np.ndarray,
        offset: np.ndarray,
        length: np.ndarray,
        *,
        little: bool = True,
    ) -> None:
        self.format_ = fmt
        self.context_ = context
        self._buffers = buffers
        self._cpu = np.ascontiguousarray(cpu, dtype=np.int32)
        self._ts = np.ascontiguousarray(ts).astype(np.int64, copy=False)
        self._offset = np.ascontiguousarray(offset, dtype=np.int64)
        self._length = np.ascontiguousarray(length, dtype=np.int32)
        self._little = little
        self._columns: dict[str, np.ndarray] = {}
        self._rows: np.ndarray | None = None

    # -- size and access ---------------------------------------------------
    def __len__(self) -> int:
        return len(self._ts)

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.column_(name)
        except KeyError:
            raise AttributeError(
                f"{self.format_.system}:{self.format_.name} has no field {name!r}"
            ) from None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.column_(name)

    def column(self, name: str) -> np.ndarray:
        """Same as ``column_``; kept for the filter compiler's duck-typed batches."""
        return self.column_(name)

    @property
    def names_(self) -> list[str]:
        """Every column name: the format's fields then the metadata."""
        return [f.name for f in self.format_.fields] + list(METADATA)

    def column_(self, name: str) -> np.ndarray:
        """The column ``name`` (decoded on first use, then cached)."""
        col = self._columns.get(name)
        if col is not None:
            return col
        if name == "common_ts":
            col = self._ts
        elif name == "common_cpu":
            col = self._cpu
        elif name == "common_comm":
            comm = self.context_.comm
            col = np.array([comm(p) for p in self.column_("common_pid").tolist()], dtype=object)
        else:
            f = self.format_.field(name)
            if f is None:
                raise KeyError(name)
            col = self._decode_field(f)
        self._columns[name] = col
        return col

    # -- decoding ----------------------------------------------------------
    def _fixed_rows(self) -> np.ndarray:
        """(N, width) bytes: the fixed part of every record, gathered once."""
        if self._rows is None:
            width = max((f.offset + (4 if f.is_dynamic else f.size) for f in self.format_.fields
                         if f.array_len != 0), default=0)
            self._rows = gather_rows(self._buffers, self._cpu, self._offset, self._length, width)
        return self._rows

    def _scalar_columns(self) -> None:
        """Decode every fixed-size scalar field not decoded yet, in one pass over the records."""
        fmt = self.format_
        order = "<" if self._little else ">"
        fields = [f for f in _scalar_fields(fmt) if f.name not in self._columns]
        dtypes = [np.dtype(order + _SCALAR_KIND[(f.size, f.signed)]) for f in fields]
        if self._rows is not None:
            rows = self._rows
            cols = [np.ascontiguousarray(rows[:, f.offset : f.offset + f.size]).view(dt).reshape(len(self))
                    for f, dt in zip(fields, dtypes)]
        else:
            cols = gather_scalars(self._buffers, self._cpu, self._offset, self._length,
                                  [(f.offset, dt) for f, dt in zip(fields, dtypes)])
        for f, col in zip(fields, cols):
            self._columns[f.name] = col

    def _decode_field(self, f: Field) -> np.ndarray:
        order = "<" if self._little else ">"
        n = len(self)
        if not f.is_array and (f.size, f.signed) in _SCALAR_KIND:
            if self.format_.field(f.name) is f:
                self._scalar_columns()
                return self._columns[f.name]
            # a field hidden by a later one of the same name
            dt = np.dtype(order + _SCALAR_KIND[(f.size, f.signed)])
            return gather_scalars(self._buffers, self._cpu, self._offset, self._length, [(f.offset, dt)])[0]
        if f.is_string or not f.is_array and f.size not in (1, 2, 4, 8):
            return np.array([self._python_value(f, i) for i in range(n)], dtype=object)
        if f.array_len and not f.is_dynamic:
            es = f.elem_size
            kind = _SCALAR_KIND.get((es, f.elem_signed))
            rows = self._fixed_rows()
            block = np.ascontiguousarray(rows[:, f.offset : f.offset + f.size])
            if kind is None:
                return block
            return block.view(np.dtype(order + kind)).reshape(n, f.array_len)
        # dynamic or trailing numeric arrays: one list per event
        return np.array([self._python_value(f, i) for i in range(n)] + [None], dtype=object)[:-1]

    def _python_value(self, f: Field, i: int) -> Any:
        from ..formats.event_format import field_value

        return field_value(f, self.payload_(i), self._little)

    def payload_(self, i: int) -> bytes:
        """The raw record of event ``i`` (starting at ``common_type``)."""
        buf = self._buffers[int(self._cpu[i])]
        off = int(self._offset[i])
        return bytes(buf[off : off + int(self._length[i])])

    def report_line_(self, i: int) -> str:
        """The ``tracewatch report`` line of event ``i``."""
        return self.context_.report_line(int(self._cpu[i]), int(self._ts[i]), self.payload_(i), self.format_)

    # -- per-event objects -------------------------------------------------
    def events_(self) -> list[Event]:
        """One :class:`Event` per row, built in bulk from the columns.

        Scalars travel in the tuple (one ``tolist()`` per column); strings and
        arrays are read from this batch's columns when first asked for.
        """
        fmt = self.format_
        cls = self.context_.event_class(fmt)
        n = len(self)
        cols: list[Any] = [repeat(None, n) if f.name in cls._lazy else self.column_(f.name).tolist()
                           for f in fmt.fields]
        cols.append(self._ts.tolist())
        cols.append(self._cpu.tolist())
        cols.append(repeat(self, n))
        cols.append(range(n))
        new = tuple.__new__
        # a million young tuples would trigger the cyclic GC over and over; they hold no cycles
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            return [new(cls, row) for row in zip(*cols)]
        finally:
            if gc_was_on:
                gc.enable()

    def take_(self, sel: np.ndarray) -> "EventBatch":
        """A batch of the rows selected by a boolean mask or index array."""
        b = EventBatch(self.format_, self.context_, self._buffers, self._cpu[sel], self._ts[sel],
                       self._offset[sel], self._length[sel], little=self._little)
        if self._rows is not None:
            b._rows = self._rows[sel]
        for k, v in self._columns.items():
            b._columns[k] = v[sel]
        return b

    def __repr__(self) -> str:
        return f"<EventBatch {self.format_.system}:{self.format_.name} x{len(self)}>"


def gather_rows(buffers: Sequence[np.ndarray], cpu: np.ndarray, offset: np.ndarray,
                length: np.ndarray, width: int) -> np.ndarray:
    """Copy the first ``width`` bytes of every record into an (N, width) matrix.

    Records shorter than ``width`` (damaged input) are zero-padded, so a column
    read never sees another record's bytes.
    """
    n = len(offset)
    words = (max(width, 0) + 3) // 4
    if n == 0 or words == 0:
        return np.zeros((n, max(width, 0)), np.uint8)
    at = np.arange(words, dtype=np.int64)
    out = _gather_words(buffers, cpu, offset, length, at, at, np.full(words, words, np.int64), n * words)
    return out.view(np.uint8).reshape(n, 4 * words)[:, :width]


def gather_scalars(buffers: Sequence[np.ndarray], cpu: np.ndarray, offset: np.ndarray, length: np.ndarray,
                   fields: Sequence[tuple[int, np.dtype]]) -> list[np.ndarray]:
    """Columns of fixed-size scalar fields, each ``(byte offset in the record, dtype)``.

    Record ``i`` is ``buffers[cpu[i]][offset[i] : offset[i] + length[i]]``;
    bytes past its end or its buffer's end read as 0.  One compiled pass copies
    the 32-bit words the fields live in (see :func:`_plan_scalars`).
    """
    n = len(offset)
    if n == 0:
        return [np.zeros(0, dt) for _, dt in fields]
    moves, total, where = _plan_scalars(fields, n)
    out = _gather_words(buffers, cpu, offset, length, moves[:, 0].copy(), moves[:, 1].copy(), moves[:, 2].copy(),
                        total)
    return _scalar_views(out, 0, fields, where, n)


def _plan_scalars(fields: Sequence[tuple[int, np.dtype]], n: int
                  ) -> tuple[np.ndarray, int, list[tuple[int, int, int]]]:
    """Where the words of ``n`` records' scalar fields go: a word-aligned 4- or 8-byte field
    into its own block (then the column as it is), the words holding smaller or unaligned
    fields into blocks shared by them (the columns are copied out of those).

    Returns the moves (rows of word in the record, first destination word, stride in
    words), the words in all (even, so blocks placed after it stay 8-byte aligned) and per
    field (block's first word, words per row, record word of the block's first word).
    """
    moves: list[tuple[int, int, int]] = []
    total = 0
    where: list[tuple[int, int, int]] = [(0, 0, 0)] * len(fields)
    shared: dict[tuple[int, int], int] = {}
    # 8-byte blocks first, so each starts 8-byte aligned
    for i in sorted(range(len(fields)), key=lambda i: -fields[i][1].itemsize):
        off, dt = fields[i]
        size = dt.itemsize
        w0, w1 = off // 4, (off + size - 1) // 4
        span = w1 - w0 + 1
        own = size in (4, 8) and off % 4 == 0
        if own or (w0, w1) not in shared:
            base = total
            total += n * span
            moves.extend((w0 + j, base + j, span) for j in range(span))
            if not own:
                shared[(w0, w1)] = base
        else:
            base = shared[(w0, w1)]
        where[i] = (base, span, w0)
    return np.array(moves, np.int64).reshape(-1, 3), total + (total & 1), where


def _scalar_views(out: np.ndarray, at: int, fields: Sequence[tuple[int, np.dtype]],
                  where: list[tuple[int, int, int]], n: int) -> list[np.ndarray]:
    """The columns of a :func:`_plan_scalars` plan placed at word ``at`` of ``out``."""
    cols = []
    for (off, dt), (base, span, w0) in zip(fields, where):
        base += at
        if dt.itemsize in (4, 8) and off % 4 == 0:
            cols.append(out[base : base + n * span].view(dt))
        else:
            cols.append(np.ndarray((n,), dt, out, 4 * base + off - 4 * w0, (4 * span,)).copy())
    return cols


def _gather_words(buffers: Sequence[np.ndarray], cpu: np.ndarray, offset: np.ndarray, length: np.ndarray,
                  m_word: np.ndarray, m_dest: np.ndarray, m_stride: np.ndarray, total: int) -> np.ndarray:
    """Run :func:`_gather_kernel` over the records of every CPU; returns its output words."""
    out = np.empty(total, np.uint32)  # every word a move names is written
    cpu = np.ascontiguousarray(cpu, dtype=np.int32)
    offset = np.ascontiguousarray(offset, dtype=np.int64)
    length = np.ascontiguousarray(length, dtype=np.int32)
    root = _common_root(buffers)
    if root is not None:
        src, start, stop = root
        _gather_kernel(src, _words_of(src), start, stop, cpu, -1, True, offset, length, m_word, m_dest, m_stride,
                       out.view(np.uint8), out)
        return out
    # buffers in separate allocations: one pass per CPU present
    start = np.zeros(len(buffers), np.int64)
    stop = np.array([len(b) for b in buffers], np.int64)
    present = np.flatnonzero(np.bincount(cpu[(cpu >= 0) & (cpu < len(buffers))], minlength=len(buffers))).tolist()
    if not present:
        out[:] = 0
        return out
    for j, c in enumerate(present):
        src = np.asarray(buffers[c])
        if src.dtype != np.uint8 or src.ndim != 1 or not src.flags.c_contiguous:
            src = np.ascontiguousarray(src).reshape(-1).view(np.uint8)
        # the first pass also zeroes the rows of no CPU
        _gather_kernel(src, _words_of(src), start, stop, cpu, c, j == 0, offset, length, m_word, m_dest, m_stride,
                       out.view(np.uint8), out)
    return out


def _words_of(src: np.ndarray) -> np.ndarray:
    """``src`` as native u32 words when it starts 4-byte aligned (empty otherwise: bytes are copied singly)."""
    if src.__array_interface__["data"][0] % 4:
        return np.zeros(0, np.uint32)
    return src[: len(src) // 4 * 4].view(np.uint32)


def _common_root(buffers: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """When every buffer is a slice of one byte array (a trace.dat's mapping): that array and
    where each buffer starts and stops in it; else None."""
    root = None
    for b in buffers:
        if len(b) == 0:
            continue
        base = getattr(b, "base", None)
        if not isinstance(base, np.ndarray) or (root is not None and base is not root):
            return None
        if b.dtype != np.uint8 or b.ndim != 1 or not b.flags.c_contiguous:
            return None
        root = base
    if root is None or root.dtype != np.uint8 or root.ndim != 1 or not root.flags.c_contiguous:
        return None
    at = root.__array_interface__["data"][0]
    start = np.zeros(len(buffers), np.int64)
    stop = np.zeros(len(buffers), np.int64)
    for c, b in enumerate(buffers):
        if len(b):
            start[c] = b.__array_interface__["data"][0] - at
            stop[c] = start[c] + len(b)
            if start[c] < 0 or stop[c] > len(root):
                return None
    return root, start, stop


@njit(cache=True, nogil=True)
def _gather_kernel(src, src32, start, stop, cpu, only_cpu, fill_invalid, offset, length, m_word, m_dest,
                   m_stride, out, out32):
    """Copy 32-bit words of records: move ``k`` copies word ``m_word[k]`` of record ``i``
    to ``out32[m_dest[k] + i * m_stride[k]]``.

    Record ``i`` is ``src[start[c] + offset[i] :]`` (``c = cpu[i]``), cut at
    ``length[i]`` bytes and at ``stop[c]``; nothing outside it is read, and
    bytes past its end are written as 0 (a record whose CPU has no buffer, all
    0).  A record that starts 4-byte aligned is read a word at a time from
    ``src32`` (``src`` as words; empty when ``src`` itself is not aligned), any
    other a byte at a time into ``out`` (``out32``'s bytes).  With
    ``only_cpu >= 0`` only that CPU's records are written (and those of no CPU
    when ``fill_invalid``).  Plain Python when NUMBA_DISABLE_JIT=1.
    """
    n_cpu = len(start)
    n_moves = len(m_word)
    words_ok = len(src32) > 0
    span = 0  # bytes of a record the moves read
    for k in range(n_moves):
        span = max(span, 4 * m_word[k] + 4)
    for i in range(len(offset)):
        c = cpu[i]
        if c < 0 or c >= n_cpu or offset[i] < 0:
            if only_cpu < 0 or fill_invalid:
                for k in range(n_moves):
                    out32[m_dest[k] + i * m_stride[k]] = 0
            continue
        if only_cpu >= 0 and c != only_cpu:
            continue
        # (the same copy as in _group_by_type: a helper taking these arrays would cost
        # reference counting per record)
        lo = start[c] + offset[i]
        hi = min(lo + length[i], stop[c])
        k0, k1, row = 0, n_moves, i
        if words_ok and (lo & 3) == 0 and lo + span <= hi:
            # the usual case: every word is inside the record
            first = lo >> 2
            for k in range(k0, k1):
                out32[m_dest[k] + row * m_stride[k]] = src32[first + m_word[k]]
        else:
            for k in range(k0, k1):
                p = lo + 4 * m_word[k]
                dst = 4 * (m_dest[k] + row * m_stride[k])
                for b in range(4):
                    out[dst + b] = src[p + b] if p + b < hi else 0


@njit(cache=True, nogil=True)
def _count_types(type_id, counts):
    """How many events of each type id (ids outside ``counts`` are not counted)."""
    nbins = len(counts)
    for i in range(len(type_id)):
        t = type_id[i]
        if t >= 0 and t < nbins:
            counts[t] += 1


@njit(cache=True, nogil=True)
def _group_by_type(type_id, which, next_row, cpu, ts, offset, length, out_pos, out_cpu, out_ts, out_offset,
                   out_length):
    """A counting sort: event ``i`` of type ``t`` is kept when ``which[t] = w >= 0`` and
    goes to row ``next_row[w]`` (then the next row), so rows keep their input order
    within a type.  Plain Python when NUMBA_DISABLE_JIT=1."""
    nbins = len(which)
    for i in range(len(type_id)):
        t = type_id[i]
        if t < 0 or t >= nbins:
            continue
        w = which[t]
        if w < 0:
            continue
        d = next_row[w]
        next_row[w] = d + 1
        out_pos[d] = i
        out_cpu[d] = cpu[i]
        out_ts[d] = ts[i]
        out_offset[d] = offset[i]
        out_length[d] = length[i]


def split_by_type(
    context: TraceContext,
    buffers: Sequence[np.ndarray],
    cpu: np.ndarray,
    ts: np.ndarray,
    offset: np.ndarray,
    length: np.ndarray,
    type_id: np.ndarray,
    *,
    only: Callable[[EventFormat], bool] | None = None,
    little: bool = True,
) -> Iterator[tuple[EventBatch, np.ndarray]]:
    """Split time-ordered events into one batch per event type.

    Yields ``(batch, positions)``: ``positions`` are the batch rows' indexes
    in the input, so per-event dispatch can restore the global time order.
    Types the trace does not describe, or that ``only`` rejects, are skipped.
    Batches come in type id order; one counting-sort pass groups the rows.
    """
    if len(type_id) == 0:
        return
    keys = np.ascontiguousarray(type_id)
    if keys.dtype != np.uint16:
        keys = keys.astype(np.int64)
    counts = np.zeros(1 << 16, np.int64)
    _count_types(keys, counts)
    which = np.full(1 << 16, -1, np.int32)
    wanted = []
    rows = 0
    for tid in np.flatnonzero(counts).tolist():
        fmt = context.formats.get(tid)
        if fmt is None or (only is not None and not only(fmt)):
            continue
        which[tid] = len(wanted)
        k = int(counts[tid])
        wanted.append((fmt, rows, rows + k))
        rows += k
    if not wanted:
        return
    ts = np.ascontiguousarray(ts)
    ts = ts.view(np.int64) if ts.dtype == np.uint64 else ts.astype(np.int64, copy=False)
    pos = np.empty(rows, np.int64)
    g_cpu = np.empty(rows, np.int32)
    g_ts = np.empty(rows, np.int64)
    g_offset = np.empty(rows, np.int64)
    g_length = np.empty(rows, np.int32)
    _group_by_type(keys, which, np.array([s for _, s, _ in wanted], np.int64),
                   np.ascontiguousarray(cpu, dtype=np.int32), ts, np.ascontiguousarray(offset, dtype=np.int64),
                   np.ascontiguousarray(length, dtype=np.int32), pos, g_cpu, g_ts, g_offset, g_length)
    for fmt, s, e in wanted:
        yield EventBatch(fmt, context, buffers, g_cpu[s:e], g_ts[s:e], g_offset[s:e], g_length[s:e],
                         little=little), pos[s:e]


def _scalar_fields(fmt: EventFormat) -> list[Field]:
    """The fixed-size scalar fields of ``fmt`` (of fields sharing a name, the one ``fmt.field`` gives)."""
    return [f for f in fmt.fields if not f.is_array and (f.size, f.signed) in _SCALAR_KIND and fmt.field(f.name) is f]
