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

from ..formats.context import LineRenderer, TraceContext
from ..formats.event_format import EventFormat, Field
from ..formats.records import gather_rows, gather_scalars
from ..formats.ring_page import recycler
from ..kernels.group import count_types, group_by_type

if TYPE_CHECKING:
    from ..formats.symbols import TraceSymbols

__all__ = ["EventBatch", "Event", "METADATA", "event_class", "report_formatter"]

#: Names tracewatch adds to every event; none is a kernel field name.
METADATA = ("common_ts", "common_cpu", "common_comm")

_SCALAR_KIND = {(1, True): "i1", (1, False): "u1", (2, True): "i2", (2, False): "u2",
                (4, True): "i4", (4, False): "u4", (8, True): "i8", (8, False): "u8"}


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


def event_class(context: TraceContext, fmt: EventFormat) -> type:
    """The :class:`Event` class of ``fmt``'s events in this trace (made once per context)."""
    cls = context.event_classes.get(fmt.id)
    if cls is None:
        cls = context.event_classes[fmt.id] = _make_event_class(fmt, context)
    return cls


def report_formatter(symbols: "TraceSymbols", formats: Any) -> LineRenderer:
    """``tracewatch report``'s line renderer: what ``str(event)`` gives when the source's
    context was given no renderer of its own.

    Imported on first use: the report modules cost a noticeable part of start-up, which
    commands that never print an event should not pay (``formats`` imports nothing of
    ``stream``, so this is no hidden cycle)."""
    from ..formats.report_text import ReportFormatter

    return ReportFormatter(symbols, formats)


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
        return self.context_.report_line(int(self._cpu[i]), int(self._ts[i]), self.payload_(i), self.format_,
                                         report_formatter)

    # -- per-event objects -------------------------------------------------
    def events_(self) -> list[Event]:
        """One :class:`Event` per row, built in bulk from the columns.

        Scalars travel in the tuple (one ``tolist()`` per column); strings and
        arrays are read from this batch's columns when first asked for.
        """
        fmt = self.format_
        cls = event_class(self.context_, fmt)
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
    count_types(keys, counts)
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
    group_by_type(keys, which, np.array([s for _, s, _, _ in wanted], np.int64),
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
