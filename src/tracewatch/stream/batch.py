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

from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

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

    @property
    def name_(self) -> str:
        return self.format_.name

    @property
    def system_(self) -> str:
        return self.format_.system

    def as_dict_(self) -> dict[str, Any]:
        """Every field and metadata value by name."""
        d = dict(zip(self._names, self))
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
        fields = " ".join(f"{k}={v!r}" for k, v in zip(self._names, self) if not k.startswith("common_")
                          or k in ("common_pid", "common_ts", "common_cpu"))
        return f"<{self.format_.system}:{self.format_.name} {fields}>"

    # Events compare as the records they are, not as tuples of values
    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = object.__hash__


def _make_event_class(fmt: EventFormat, context: TraceContext) -> type:
    names = tuple(f.name for f in fmt.fields) + ("common_ts", "common_cpu")
    ns: dict[str, Any] = {"__slots__": (), "format_": fmt, "_context": context, "_names": names}
    for i, name in enumerate(names):
        ns[name] = property(itemgetter(i), doc=f"field {name}")
    pid_i = names.index("common_pid") if "common_pid" in names else None
    if pid_i is not None:
        getter = itemgetter(pid_i)
        comm = context.comm
        ns["common_comm"] = property(lambda self: comm(getter(self)), doc="command name of common_pid")
    return type(f"{fmt.system}_{fmt.name}", (Event,), ns)


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

    def _decode_field(self, f: Field) -> np.ndarray:
        order = "<" if self._little else ">"
        n = len(self)
        if not f.is_array and (f.size, f.signed) in _SCALAR_KIND:
            rows = self._fixed_rows()
            dt = np.dtype(order + _SCALAR_KIND[(f.size, f.signed)])
            return np.ascontiguousarray(rows[:, f.offset : f.offset + f.size]).view(dt).reshape(n)
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
        """One :class:`Event` per row, built in bulk from the columns."""
        fmt = self.format_
        cls = self.context_.event_class(fmt)
        n = len(self)
        cols: list[Any] = [self.column_(f.name).tolist() for f in fmt.fields]
        cols.append(self._ts.tolist())
        cols.append(self._cpu.tolist())
        cols.append([self] * n)
        cols.append(range(n))
        new = tuple.__new__
        return [new(cls, row) for row in zip(*cols)]

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
    out = np.zeros((n, width), dtype=np.uint8)
    if n == 0 or width == 0:
        return out
    cols = np.arange(width, dtype=np.int64)
    cpus = np.unique(cpu) if len(buffers) > 1 else np.array([int(cpu[0])])
    for c in cpus.tolist():
        sel = slice(None) if len(cpus) == 1 else (cpu == c)
        buf = buffers[c]
        off = offset[sel]
        idx = off[:, None] + cols
        short = (length[sel] < width)
        if short.any() or (len(off) and int(off.max()) + width > len(buf)):
            limit = np.minimum(off + length[sel], len(buf))[:, None]
            valid = idx < limit
            block = np.where(valid, buf[np.minimum(idx, len(buf) - 1)], 0).astype(np.uint8)
        else:
            block = buf[idx]
        out[sel] = block
    return out


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
    """
    if len(type_id) == 0:
        return
    order = np.argsort(type_id, kind="stable")
    sorted_ids = type_id[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(order)]))
    for s, e in zip(starts.tolist(), ends.tolist()):
        tid = int(sorted_ids[s])
        fmt = context.formats.get(tid)
        if fmt is None or (only is not None and not only(fmt)):
            continue
        pos = order[s:e]
        yield EventBatch(fmt, context, buffers, cpu[pos], ts[pos], offset[pos], length[pos],
                         little=little), pos
