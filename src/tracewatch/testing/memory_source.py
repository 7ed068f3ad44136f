"""An event source built in memory from ring-buffer pages, for tests of code that consumes events.

:class:`MemorySource` keeps the :class:`~tracewatch.sources.EventSource`
contract as :class:`~tracewatch.sources.file.FileSource` and
:class:`~tracewatch.sources.session.LiveSession` do, so the dispatcher, a
script or a tool can be run over events a test writes itself, without a
fixture file or a kernel (as httpx's ``MockTransport`` stands in for a
network)::

    sched = event_format("sched:demo", 300, "int value;")
    src = MemorySource([sched])
    src.add(0, 1_000, record(sched, value=7))   # CPU 0, at 1000 ns
    src.lose(1, 5)                              # CPU 1 lost 5 events before its next one
    src.add(1, 1_500, record(sched, value=8))
    for chunk in src.chunks(): ...

Events go through the same bytes the kernel writes
(:class:`~tracewatch.testing.PageBuilder` pages) and the same decoding a live
run does (:class:`~tracewatch.stream.merge.LiveMerger`), so what a test sees is
what a real source would hand over.
"""

from __future__ import annotations

import re
import struct
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import TraceFormatError
from ..formats.context import TraceContext
from ..formats.event_format import EventFormat, parse_event_format
from ..formats.symbols import TraceSymbols
from ..stream.batch import EventBatch
from ..stream.chunk import EventChunk
from ..stream.dispatch import pattern_matches
from ..stream.merge import LiveMerger
from .page_builder import PageBuilder

__all__ = ["MemorySource", "event_format", "record"]

#: the common header of every event record (as the kernel's format files declare it)
_COMMON_FIELDS = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
)
_COMMON_SIZE = 8

#: C scalar types a test format may declare: (size, signed)
_SCALARS = {
    "char": (1, True), "unsigned char": (1, False), "u8": (1, False), "s8": (1, True),
    "short": (2, True), "unsigned short": (2, False), "u16": (2, False), "s16": (2, True),
    "int": (4, True), "unsigned int": (4, False), "u32": (4, False), "s32": (4, True), "pid_t": (4, True),
    "long": (8, True), "unsigned long": (8, False), "u64": (8, False), "s64": (8, True),
    "long long": (8, True), "unsigned long long": (8, False), "void *": (8, False),
}
_STRUCT_CODE = {(1, True): "b", (1, False): "B", (2, True): "h", (2, False): "H",
                (4, True): "i", (4, False): "I", (8, True): "q", (8, False): "Q"}


def event_format(full_name: str, type_id: int, fields: str = "", print_fmt: str | None = None) -> EventFormat:
    """An :class:`EventFormat` as tracefs would describe it, from C declarations.

    ``full_name`` is ``system:name``; ``fields`` scalar declarations such as
    ``"int value; unsigned long addr;"`` (``char comm[16]`` for a fixed array),
    laid out after the common header with the C alignment of each type;
    ``print_fmt`` the format's ``print fmt:`` line (default: ``name=value`` of each
    scalar field, so that ``str(event)`` reads like a kernel event's line).
    """
    system, _, name = full_name.partition(":")
    if not name:
        raise ValueError(f"event names are system:name, not {full_name!r}")
    lines = [_COMMON_FIELDS]
    offset = _COMMON_SIZE
    shown: list[tuple[str, str]] = []  # (field, printf conversion) for the default print fmt
    for decl in filter(None, (d.strip() for d in fields.split(";"))):
        m = re.fullmatch(r"(.+?)\s*(\b\w+)\s*(?:\[(\d+)\])?", decl)
        if m is None or m.group(1).strip() not in _SCALARS:
            raise ValueError(f"cannot lay out {decl!r}: give a scalar type ({', '.join(sorted(_SCALARS))})")
        ctype, fname, count = m.group(1).strip(), m.group(2), m.group(3)
        size, signed = _SCALARS[ctype]
        offset += -offset % size
        total = size * int(count) if count else size
        suffix = f"[{count}]" if count else ""
        lines.append(f"\tfield:{ctype} {fname}{suffix};\toffset:{offset};\tsize:{total};\tsigned:{int(signed)};\n")
        offset += total
        if not count:
            shown.append((fname, ("%lld" if signed else "%llu") if size == 8 else ("%d" if signed else "%u")))
    if print_fmt is None:
        text_part = " ".join(f"{n}={conv}" for n, conv in shown)
        print_fmt = f'"{text_part}"' + "".join(f", REC->{n}" for n, _ in shown)
    text = f"name: {name}\nID: {type_id}\nformat:\n{''.join(lines)}\nprint fmt: {print_fmt}\n"
    return parse_event_format(text, system)


def record(fmt: EventFormat, *, common_pid: int = 0, little: bool = True, **values: int | bytes) -> bytes:
    """The record bytes of one event of ``fmt``: the common header (``common_type``,
    ``common_pid``) and the named fields (others are 0; a fixed array takes bytes)."""
    order = "<" if little else ">"
    size = max((f.offset + f.size for f in fmt.fields), default=_COMMON_SIZE)
    out = bytearray(size)
    struct.pack_into(order + "HBBi", out, 0, fmt.id, 0, 0, common_pid)
    for name, value in values.items():
        f = fmt.field(name)
        if f is None:
            raise ValueError(f"{fmt.full_name} has no field {name!r}")
        if isinstance(value, (bytes, bytearray)):
            out[f.offset:f.offset + f.size] = bytes(value[: f.size]).ljust(f.size, b"\0")
        elif f.is_array or (f.size, f.signed) not in _STRUCT_CODE:
            raise ValueError(f"field {name} of {fmt.full_name} takes bytes, not {value!r}")
        else:
            code = _STRUCT_CODE[(f.size, f.signed)]
            struct.pack_into(order + code, out, f.offset, value)
    return bytes(out)


class MemorySource:
    """An :class:`~tracewatch.sources.EventSource` over ring-buffer pages held in memory.

    ``formats``: the trace's event types; ``pages``: per CPU, a
    :class:`PageBuilder` or the bytes of whole pages (``page_size``,
    ``commit_size``, ``little`` describe them; a builder brings its own);
    events can also be added one by one with :meth:`add` and lost-event marks
    with :meth:`lose`.  :meth:`chunks` decodes and merges everything as a live
    run does and hands it out ``chunk_events`` at a time, like
    :class:`~tracewatch.sources.file.FileSource`.  ``live`` says what the
    source claims to be (a test can run a script as a live run would); it
    may be changed at any time.  :meth:`split` (the whole trace per type) is
    offered while ``merges_whole`` is true; :meth:`stop` stops it as a signal
    stops a live session (its stop listeners are told, the chunks end).
    """

    def __init__(self, formats: Iterable[EventFormat] | Mapping[int, EventFormat] = (),
                 pages: Mapping[int, PageBuilder | bytes] | None = None, *,
                 symbols: TraceSymbols | None = None, chunk_events: int = 262_144, live: bool = False,
                 page_size: int = 4096, commit_size: int = 8, little: bool = True,
                 merges_whole: bool = True) -> None:
        fmts = formats.values() if isinstance(formats, Mapping) else formats
        self._formats: dict[int, EventFormat] = {f.id: f for f in fmts}
        self.context = TraceContext(self._formats, symbols or TraceSymbols(little_endian=little))
        self.chunk_events = chunk_events
        self.live = live
        self.merges_whole = merges_whole
        builders = [p for p in (pages or {}).values() if isinstance(p, PageBuilder)]
        self.page_size = builders[0].page_size if builders else page_size
        self.commit_size = builders[0].commit_size if builders else commit_size
        self.little = builders[0].little if builders else little
        self.pages: dict[int, PageBuilder | bytes] = dict(pages or {})
        self._lost_next: dict[int, int] = {}
        self._stop_listeners: list[Callable[[], None]] = []
        #: why the source was stopped (:meth:`stop`), None while it runs
        self.stop_reason: str | None = None
        self.closed = False

    @property
    def formats(self) -> dict[int, EventFormat]:
        return self._formats

    # -- writing events ----------------------------------------------------------
    def _builder(self, cpu: int) -> PageBuilder:
        b = self.pages.get(cpu)
        if b is None:
            b = self.pages[cpu] = PageBuilder(self.page_size, commit_size=self.commit_size, little=self.little)
        if not isinstance(b, PageBuilder):
            raise ValueError(f"CPU {cpu} was given as bytes: add() needs a PageBuilder")
        return b

    def add(self, cpu: int, ts: int, payload: bytes) -> None:
        """Append an event of ``cpu`` at trace time ``ts`` (ns): ``payload`` is its record
        (:func:`record`); each CPU's events must come in time order, as the kernel's do."""
        b = self._builder(cpu)
        missed = self._lost_next.pop(cpu, 0)
        if missed:
            b.begin_page(ts, missed=missed)  # the kernel marks the first page after a loss
        b.add(ts, payload)

    def lose(self, cpu: int, count: int = -1) -> None:
        """Mark that ``cpu``'s ring buffer lost ``count`` events (-1: some, number unknown)
        before its next :meth:`add`."""
        if count == 0 or count < -1:
            raise ValueError("count is a number of lost events, or -1 when unknown")
        self._lost_next[cpu] = count

    # -- the EventSource contract ------------------------------------------------
    def _merged(self) -> tuple[EventChunk | None, TraceFormatError | None]:
        """Every event of the undamaged pages, decoded and merged in one chunk (None: no
        events), and the error of the first damaged page (None: no damage)."""
        merger = LiveMerger(self.context, sorted(self.pages), self.page_size, commit_size=self.commit_size,
                            little=self.little)
        for cpu in sorted(self.pages):
            p = self.pages[cpu]
            data = p.build() if isinstance(p, PageBuilder) else bytes(p)
            merger.add_pages(cpu, np.frombuffer(data, dtype=np.uint8))
        chunk = merger.release(final=True)
        error = None
        if merger.damage:
            cpu, message = merger.damage[0]
            error = TraceFormatError(message, path="memory source", cpu=cpu)
        return chunk, error

    def chunks(self) -> Iterator[EventChunk]:
        """The events in trace-cmd's order, ``chunk_events`` at a time; with damaged pages,
        the events of the others, then the :class:`TraceFormatError` (as a file source gives
        what comes before its damage, then the error)."""
        whole, error = self._merged()
        if whole is not None:
            for start in range(0, len(whole), self.chunk_events):
                if self.stop_reason is not None:
                    return
                yield whole.slice(start, min(start + self.chunk_events, len(whole)))
        if error is not None:
            raise error

    def split(self, events: str | None = None, *, only: Callable[[EventFormat], bool] | None = None
              ) -> Iterator[tuple[EventBatch, np.ndarray]]:
        """The whole trace as one batch per event type, each with its rows' positions in
        the order of :meth:`chunks` (``events``: a glob such as ``"sched:*"``); damage as
        in :meth:`chunks`."""
        if events is not None:
            pats = [p.strip().replace("/", ":") for p in events.split(",") if p.strip()]
            by_glob = lambda fmt: any(pattern_matches(p, fmt) for p in pats)  # noqa: E731
            only = by_glob if only is None else (lambda f, a=by_glob, b=only: a(f) and b(f))
        whole, error = self._merged()
        if whole is not None:
            yield from whole.batches(only=only)
        if error is not None:
            raise error

    def lost_events(self) -> dict[int, int]:
        """Events lost per CPU, from the pages' marks (-1: some, number unknown)."""
        out = {cpu: 0 for cpu in self.pages}
        whole, _error = self._merged()
        if whole is None:
            return out
        for cpu, count, _ts in whole.losses():
            if count > 0:
                out[cpu] = max(out[cpu], 0) + count
            elif out[cpu] == 0:
                out[cpu] = -1
        return out

    def add_stop_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` when :meth:`stop` is called (the StoppableSource part of the
        contract, as a live session keeps it)."""
        self._stop_listeners.append(listener)

    def stop(self, reason: str = "stopped") -> None:
        """Stop as a live session does at a signal: the stop listeners are told at once and
        :meth:`chunks` ends before its next chunk.  A handler may call it to test how a
        script or tool behaves when a live run is stopped in the middle."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        for listener in list(self._stop_listeners):
            listener()

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "MemorySource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
