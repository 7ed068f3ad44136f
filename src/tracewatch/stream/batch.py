"""Columnar batches of events of one type, and the per-event objects built from them.

An :class:`EventBatch` holds the events of one event type from one stretch of a
trace, in time order, as numpy columns named after the kernel's fields
(``b.id``, ``b.prev_pid``) plus the metadata columns ``common_ts`` (ns),
``common_cpu`` and ``common_comm``.  The first scalar column asked for
decodes every fixed-size scalar column of the batch in one compiled pass over
its records (:func:`gather_scalars`); fixed arrays come from an (N, width)
byte matrix gathered once; strings and dynamic arrays are decoded only when
asked for.

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

from ..compiled import kernel
from ..formats.event_format import EventFormat, Field
from ..formats.ring_page import recycler

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


def event_layout(fmt: EventFormat) -> dict[str, int]:
    """Where each value sits in an Event tuple of ``fmt``: the eager fields in format order,
    then ``common_ts`` and ``common_cpu``; the batch and the row are always the last two items.
    Lazy fields (strings, arrays, rarely read common fields) have no slot."""
    layout: dict[str, int] = {}
    i = 0
    for f in fmt.fields:
        if _eager(f):
            layout[f.name] = i  # a field hidden by a later one of the same name: the later wins
            i += 1
    layout["common_ts"] = i
    layout["common_cpu"] = i + 1
    return layout


def _make_event_class(fmt: EventFormat, context: TraceContext) -> type:
    names = tuple(dict.fromkeys([f.name for f in fmt.fields] + ["common_ts", "common_cpu"]))
    layout = event_layout(fmt)
    lazy = tuple(name for name in names if name not in layout)
    ns: dict[str, Any] = {"__slots__": (), "format_": fmt, "_context": context, "_names": names, "_lazy": lazy}
    for name in names:
        if name in layout:
            ns[name] = _field_getter(layout[name], name)
        else:
            ns[name] = property(_lazy_getter(name), doc=f"field {name}")
    if "common_pid" in layout:
        getter = itemgetter(layout["common_pid"])
        comm = context.comm
        ns["common_comm"] = property(lambda self: comm(getter(self)), doc="command name of common_pid")
    return type(f"{fmt.system}_{fmt.name}", (Event,), ns)


try:
    # what namedtuple's fields are: a C descriptor reading one tuple slot (faster than a property)
    from collections import _tuplegetter

    def _field_getter(i: int, name: str) -> Any:
        return _tuplegetter(i, f"field {name}")
except ImportError:  # another Python implementation

    def _field_getter(i: int, name: str) -> Any:
        return property(itemgetter(i), doc=f"field {name}")


_ROW_NUMBERS: list[int] = []


def _row_numbers(n: int) -> list[int]:
    """At least ``n`` ints 0, 1, 2, ...: one shared set of int objects for every batch's row
    numbers, so building an Event allocates no int for its row (and freeing it frees none)."""
    global _ROW_NUMBERS
    if len(_ROW_NUMBERS) < n:
        _ROW_NUMBERS = list(range(max(n, 2 * len(_ROW_NUMBERS))))
    return _ROW_NUMBERS


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
    ``raw_``, ``events_()``, ``payload_(i)``.
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
        type_id: int | None = None,
    ) -> None:
        self.format_ = fmt
        # every row's common_type, when the rows were grouped by it (the column needs no gather)
        self._type_id = type_id
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

    def raw_(self, name: str) -> np.ndarray:
        """``(N, size)`` uint8: the raw bytes of fixed-size field ``name`` in every row
        (for conversions of one's own, e.g. perf's arguments)."""
        f = self.format_.field(name)
        if f is None:
            raise KeyError(name)
        if f.is_dynamic or (f.is_array and f.array_len == 0):
            raise ValueError(f"{self.format_.full_name}: {name} has no fixed size")
        return self._fixed_rows()[:, f.offset : f.offset + f.size]

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
        if self._type_id is not None:
            for i, f in enumerate(fields):
                if f.name == "common_type" and f.offset == 0 and f.size == 2:
                    # the rows were grouped by this very value (read from the record's first 2 bytes)
                    col = recycler.empty(len(self), order + "u2")
                    col[:] = self._type_id
                    self._columns[f.name] = col.view(dtypes[i])
                    del fields[i], dtypes[i]
                    break
        if self._rows is not None:
            rows = self._rows
            cols = [np.ascontiguousarray(rows[:, f.offset : f.offset + f.size]).view(dt).reshape(len(self))
                    for f, dt in zip(fields, dtypes)]
        elif not fields:
            cols = []
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
        # one column per tuple slot (see event_layout); lazy fields have none
        cols: list[Any] = [self.column_(f.name).tolist() for f in fmt.fields if _eager(f)]
        cols.append(self._ts.tolist())
        cols.append(self._cpu.tolist())
        cols.append(repeat(self, n))
        cols.append(_row_numbers(n))  # zip stops at the columns' end
        # a million young tuples would trigger the cyclic GC over and over; they hold no cycles
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            # built in C: cls(row) is tuple's own constructor (no __new__/__init__ of ours), no bytecode per event
            return list(map(cls, zip(*cols)))
        finally:
            if gc_was_on:
                gc.enable()

    def take_(self, sel: np.ndarray) -> "EventBatch":
        """A batch of the rows selected by a boolean mask or index array."""
        b = EventBatch(self.format_, self.context_, self._buffers, self._cpu[sel], self._ts[sel],
                       self._offset[sel], self._length[sel], little=self._little, type_id=self._type_id)
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
    bytes past its end or its buffer's end read as 0.  Buffers that are slices
    of one array (a trace.dat's mapping): one compiled pass over the records
    (see :func:`_scalars_kernel`), the columns views of one allocation, each in
    the trace's byte order as the dtype says.  Separate buffers (live pages):
    one pass per CPU copying the words the fields live in (:func:`_plan_scalars`).
    """
    n = len(offset)
    if n == 0:
        return [np.zeros(0, dt) for _, dt in fields]
    root = _common_root(buffers)
    if root is None:
        # buffers in separate allocations (live pages): one pass per CPU present copying the
        # 32-bit words the fields live in (see _plan_scalars)
        moves, total, where = _plan_scalars(fields, n)
        words = _gather_words(buffers, cpu, offset, length, moves[:, 0].copy(), moves[:, 1].copy(),
                              moves[:, 2].copy(), total)
        return _scalar_views(words, 0, fields, where, n)
    sizes = [np.dtype(dt).itemsize for _, dt in fields]
    # widest first: every column starts aligned to its item size
    base = [0] * len(fields)
    at = 0
    for i in sorted(range(len(fields)), key=lambda i: -sizes[i]):
        base[i] = at
        at += n * sizes[i]
    out = recycler.empty((at + 7) // 8, np.uint64)
    f_off = np.array([off for off, _ in fields], np.int64)
    f_size = np.array(sizes, np.int64)
    f_base = np.array(base, np.int64)
    w0 = int(f_off.min()) // 4
    need = (int((f_off + f_size).max()) + 3) // 4 - w0  # words of a record the fields span
    # rows of an even width up to 8 are copied without a loop (the extra word is never read)
    width = need + (need & 1) if need < 8 else need
    out8 = out.view(np.uint8)
    src, start, stop = root
    _scalars_kernel(src, _words_of(src), start, stop, np.ascontiguousarray(cpu, dtype=np.int32),
                    np.ascontiguousarray(offset, dtype=np.int64), np.ascontiguousarray(length, dtype=np.int32),
                    w0, need, width, f_off, f_size, f_base, out8, out.view(np.uint16), out.view(np.uint32))
    return [out8[b : b + n * sz].view(np.dtype(dt)) for (_, dt), b, sz in zip(fields, base, sizes)]

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


#: records per block of :func:`_scalars_kernel` (their bytes stay in L1/L2 from field to field)
_BLOCK = 256


@kernel
def _scalars_kernel(src, src32, start, stop, cpu, offset, length, w0, need, width, f_off, f_size, f_base,
                    out8, out16, out32):
    """Scalar columns of records, a block of records at a time: where each record starts,
    then each field's values of the block, one tight loop per field.

    Field ``k`` (``f_size[k]`` bytes at record byte ``f_off[k]``) of record ``i`` goes
    to bytes ``f_base[k] + i * f_size[k]`` of ``out8`` (``out16``/``out32``: its views;
    each column aligned to its item size).  Record ``i`` is ``src[start[c] + offset[i] :]``
    (``c = cpu[i]``), cut at ``length[i]`` bytes and at ``stop[c]``.  A record that
    starts 4-byte aligned and holds words ``w0 : w0 + need`` (every field) is read from
    ``src32``, ``src`` as words (empty when ``src`` is not aligned), with fields at their
    natural alignment; any other goes through :func:`_span_rows` (bytes past the record
    are 0).  Indexes are unsigned so the loops need no negative-index handling.  Plain
    Python when NUMBA_DISABLE_JIT=1.
    """
    n = len(offset)
    n_cpu = len(start)
    nf = len(f_off)
    words_ok = len(src32) > 0
    for k in range(nf):
        sz = f_size[k]
        if (sz == 8 and f_off[k] % 4 != 0) or (sz == 4 and f_off[k] % 4 != 0) or \
                (sz == 2 and f_off[k] % 2 != 0) or (sz != 1 and sz != 2 and sz != 4 and sz != 8):
            words_ok = False
    src16 = src32.view(np.uint16)
    span = 4 * (w0 + need)
    addr = np.zeros(_BLOCK, np.uint64)
    slow = np.empty(_BLOCK, np.int64)
    scratch = np.empty(width, np.uint32)
    u1 = np.uint64(1)
    u2 = np.uint64(2)
    for lo in range(0, n, _BLOCK):
        m = min(_BLOCK, n - lo)
        n_slow = 0
        for j in range(m):
            i = lo + j
            c = cpu[i]
            ok = False
            if words_ok and c >= 0 and c < n_cpu and offset[i] >= 0:
                a = start[c] + offset[i]
                ok = (a & 3) == 0 and a + span <= min(a + length[i], stop[c])
            if ok:
                addr[j] = np.uint64(a)
            else:
                addr[j] = 0  # (a valid place to read; the row is redone below)
                slow[n_slow] = j
                n_slow += 1
        ulo = np.uint64(lo)
        for k in range(nf):
            sz = f_size[k]
            o = np.uint64(f_off[k])
            if sz == 8:
                d = (np.uint64(f_base[k]) >> u2) + u2 * ulo
                q = o >> u2
                for j in range(np.uint64(m)):
                    w = (addr[j] >> u2) + q
                    out32[d + u2 * j] = src32[w]
                    out32[d + u2 * j + u1] = src32[w + u1]
            elif sz == 4:
                d = (np.uint64(f_base[k]) >> u2) + ulo
                q = o >> u2
                for j in range(np.uint64(m)):
                    out32[d + j] = src32[(addr[j] >> u2) + q]
            elif sz == 2:
                d = (np.uint64(f_base[k]) >> u1) + ulo
                q = o >> u1
                for j in range(np.uint64(m)):
                    out16[d + j] = src16[(addr[j] >> u1) + q]
            elif sz == 1:
                d = np.uint64(f_base[k]) + ulo
                for j in range(np.uint64(m)):
                    out8[d + j] = src[addr[j] + o]
        for x in range(n_slow):
            i = lo + slow[x]
            _span_rows(src, src32, start, stop, cpu, -1, True, offset, length, w0, need, width, i, i + 1,
                       scratch.view(np.uint8), scratch)
            _columns_of_rows(scratch, 1, width, i, w0, f_off, f_size, f_base, out8, out16, out32)


@kernel
def _span_rows(src, src32, start, stop, cpu, only_cpu, fill_invalid, offset, length, w0, need, width, lo, hi,
               rows8, rows32):
    """Words ``w0 : w0 + width`` of records ``lo:hi`` to ``rows32[(i - lo) * width :]``; the
    words past ``w0 + need`` may hold anything (they are not read).

    Record ``i`` is ``src[start[c] + offset[i] :]`` (``c = cpu[i]``), cut at
    ``length[i]`` bytes and at ``stop[c]``; bytes past its end are written as 0
    (a record whose CPU has no buffer, all 0).  A record that starts 4-byte
    aligned and holds the words is read from ``src32`` (``src`` as words; empty
    when ``src`` is not aligned), any other a byte at a time.  With
    ``only_cpu >= 0`` only that CPU's records are written (and those of no CPU
    when ``fill_invalid``)."""
    n_cpu = len(start)
    words_ok = len(src32) > 0
    span = 4 * (w0 + need)
    last = len(src32) - w0 - width  # the last word a fast copy may start at
    for i in range(lo, hi):
        r = (i - lo) * width
        c = cpu[i]
        if c < 0 or c >= n_cpu or offset[i] < 0:
            if only_cpu < 0 or fill_invalid:
                for w in range(width):
                    rows32[r + w] = 0
            continue
        if only_cpu >= 0 and c != only_cpu:
            continue
        a = start[c] + offset[i]
        e = min(a + length[i], stop[c])
        if words_ok and (a & 3) == 0 and a + span <= e and (a >> 2) <= last:
            first = (a >> 2) + w0
            # straight-line copies for the usual widths (a loop of unknown length costs more than the copy)
            if width == 8:
                rows32[r] = src32[first]
                rows32[r + 1] = src32[first + 1]
                rows32[r + 2] = src32[first + 2]
                rows32[r + 3] = src32[first + 3]
                rows32[r + 4] = src32[first + 4]
                rows32[r + 5] = src32[first + 5]
                rows32[r + 6] = src32[first + 6]
                rows32[r + 7] = src32[first + 7]
            elif width == 6:
                rows32[r] = src32[first]
                rows32[r + 1] = src32[first + 1]
                rows32[r + 2] = src32[first + 2]
                rows32[r + 3] = src32[first + 3]
                rows32[r + 4] = src32[first + 4]
                rows32[r + 5] = src32[first + 5]
            elif width == 4:
                rows32[r] = src32[first]
                rows32[r + 1] = src32[first + 1]
                rows32[r + 2] = src32[first + 2]
                rows32[r + 3] = src32[first + 3]
            elif width == 2:
                rows32[r] = src32[first]
                rows32[r + 1] = src32[first + 1]
            else:
                for w in range(width):
                    rows32[r + w] = src32[first + w]
        else:
            p = a + 4 * w0
            for b in range(4 * width):
                rows8[4 * r + b] = src[p + b] if p + b < e else 0


@kernel
def _columns_of_rows(rows32, m, width, row0, w0, f_off, f_size, f_base, out8, out16, out32):
    """Field ``k`` (``f_size[k]`` bytes at record byte ``f_off[k]``) of rows ``0:m`` of
    ``rows32`` (``width`` words each, from record word ``w0``) to column bytes
    ``f_base[k] + (row0 + j) * f_size[k]`` of ``out8`` (``out16``/``out32``: its views;
    each column aligned to its item size).  Bytes are copied as they are."""
    rows8 = rows32.view(np.uint8)
    rows16 = rows32.view(np.uint16)
    for k in range(len(f_off)):
        sz = f_size[k]
        ob = f_off[k] - 4 * w0  # byte of the field in a row
        if (sz == 8 or sz == 4) and ob % 4 == 0:
            q = ob >> 2
            if sz == 8:
                d = (f_base[k] >> 2) + 2 * row0
                for j in range(m):
                    out32[d + 2 * j] = rows32[j * width + q]
                    out32[d + 2 * j + 1] = rows32[j * width + q + 1]
            else:
                d = (f_base[k] >> 2) + row0
                for j in range(m):
                    out32[d + j] = rows32[j * width + q]
        elif sz == 2 and ob % 2 == 0:
            d = (f_base[k] >> 1) + row0
            q = ob >> 1
            for j in range(m):
                out16[d + j] = rows16[j * 2 * width + q]
        elif sz == 1:
            d = f_base[k] + row0
            for j in range(m):
                out8[d + j] = rows8[j * 4 * width + ob]
        else:
            d = f_base[k] + row0 * sz
            for j in range(m):
                for b in range(sz):
                    out8[d + j * sz + b] = rows8[j * 4 * width + ob + b]


def _gather_words(buffers: Sequence[np.ndarray], cpu: np.ndarray, offset: np.ndarray, length: np.ndarray,
                  m_word: np.ndarray, m_dest: np.ndarray, m_stride: np.ndarray, total: int) -> np.ndarray:
    """Run :func:`_gather_kernel` over the records of every CPU; returns its output words."""
    out = recycler.empty(total, np.uint32)  # every word a move names is written
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


@kernel
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


@kernel
def _count_types(type_id, counts):
    """How many events of each type id (ids outside ``counts`` are not counted)."""
    nbins = len(counts)
    for i in range(len(type_id)):
        t = type_id[i]
        if t >= 0 and t < nbins:
            counts[t] += 1


@kernel
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
        wanted.append((fmt, rows, rows + k, tid))
        rows += k
    if not wanted:
        return
    ts = np.ascontiguousarray(ts)
    ts = ts.view(np.int64) if ts.dtype == np.uint64 else ts.astype(np.int64, copy=False)
    pos = recycler.empty(rows, np.int64)
    g_cpu = recycler.empty(rows, np.int32)
    g_ts = recycler.empty(rows, np.int64)
    g_offset = recycler.empty(rows, np.int64)
    g_length = recycler.empty(rows, np.int32)
    _group_by_type(keys, which, np.array([s for _, s, _, _ in wanted], np.int64),
                   np.ascontiguousarray(cpu, dtype=np.int32), ts, np.ascontiguousarray(offset, dtype=np.int64),
                   np.ascontiguousarray(length, dtype=np.int32), pos, g_cpu, g_ts, g_offset, g_length)
    for fmt, s, e, tid in wanted:
        yield EventBatch(fmt, context, buffers, g_cpu[s:e], g_ts[s:e], g_offset[s:e], g_length[s:e],
                         little=little, type_id=tid), pos[s:e]


def split_type_index(
    context: TraceContext,
    buffers: Sequence[np.ndarray],
    index: Any,
    *,
    start: int = 0,
    stop: int | None = None,
    only: Callable[[EventFormat], bool] | None = None,
    little: bool = True,
) -> Iterator[tuple[EventBatch, np.ndarray]]:
    """:func:`split_by_type` of merged positions ``[start, stop)`` of an index already
    grouped by type (``formats.tracedat.TypeIndex``): the same batches and positions
    (relative to ``start``), taken as slices without another pass over the events."""
    for k, tid in enumerate(index.type_id.tolist()):
        fmt = context.formats.get(tid)
        if fmt is None or (only is not None and not only(fmt)):
            continue
        s = index.rows(k, start, stop)
        if s.stop <= s.start:
            continue
        pos = index.pos[s]
        if start:
            pos = pos - start
        yield EventBatch(fmt, context, buffers, index.cpu[s], index.ts[s], index.offset[s], index.length[s],
                         little=little, type_id=tid), pos


def _scalar_fields(fmt: EventFormat) -> list[Field]:
    """The fixed-size scalar fields of ``fmt`` (of fields sharing a name, the one ``fmt.field`` gives)."""
    return [f for f in fmt.fields if not f.is_array and (f.size, f.signed) in _SCALAR_KIND and fmt.field(f.name) is f]
