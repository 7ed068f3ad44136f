"""A trace.dat file as an event source: the same chunks a live session yields.

:class:`FileSource` hands out the file's events in time order as
:class:`~tracewatch.stream.chunk.EventChunk` slices, so the dispatch code does
not know whether it reads a file or the kernel.  On damaged input it yields
every event before the damage and then raises the
:class:`~tracewatch.errors.TraceFormatError` (or, with ``keep_going``, skips
the damaged pages and lists them in ``damage``).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import TraceFormatError, TracewatchError
from ..formats.context import TraceContext
from ..formats.event_format import EventFormat
from ..formats.tracedat import WHOLE_MERGE_BYTES, TraceDatReader
from ..stream.batch import Event, EventBatch, split_type_index
from ..stream.chunk import EventChunk

__all__ = ["FileSource", "open_trace", "open_reader", "check_event_patterns", "kernel_event_names",
           "short_records"]

#: what ``-`` reads, as trace-cmd's ``-i -`` does
STDIN = "-"


def open_reader(path: str, **kwargs) -> TraceDatReader:
    """A :class:`TraceDatReader` of the input a user named: a file, ``-`` (standard input)
    or a pipe such as ``/dev/stdin`` of ``cat x.dat | ...``; a directory is a clear error.

    A trace.dat is read at random (sections, then each CPU's pages), so an input that
    cannot seek is first copied to an unlinked temporary file (``$TMPDIR``); the
    reader and its errors still name the input as given.
    """
    if path != STDIN:
        try:
            st = os.stat(path)
        except OSError as e:
            raise TraceFormatError(f"cannot open: {e.strerror}", path=path) from None
        if stat.S_ISDIR(st.st_mode):
            raise TraceFormatError("is a directory, not a trace.dat file", path=path)
        if stat.S_ISREG(st.st_mode):
            return TraceDatReader(path, **kwargs)
    name = "standard input" if path == STDIN else path
    with _spooled(path, name) as spool:
        spool_path = f"/proc/self/fd/{spool.fileno()}"
        try:
            reader = TraceDatReader(spool_path, **kwargs)
        except TraceFormatError as e:
            e.path = name if e.path == spool_path else e.path
            raise
    reader.path = name  # the mapping keeps the unlinked copy alive; messages name the input
    return reader


def _spooled(path: str, name: str):
    """An unlinked temporary file holding everything ``path`` (``-``: stdin) yields;
    ``name`` is the input in messages."""
    spool = tempfile.TemporaryFile(prefix="tracewatch-input-")
    try:
        if path == STDIN:
            shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        else:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, spool, 1 << 20)
        spool.flush()
    except OSError as e:
        spool.close()
        raise TraceFormatError(f"cannot copy the input to a temporary file ($TMPDIR): {e.strerror}",
                               path=name) from None
    return spool


def _matcher(pattern: str | None):
    if pattern is None:
        return None
    from ..stream.dispatch import pattern_matches

    pats = [p.strip().replace("/", ":") for p in pattern.split(",") if p.strip()]
    return lambda fmt: any(pattern_matches(p, fmt) for p in pats)


def kernel_event_names() -> list[str] | None:
    """Every event the running kernel can trace (``system:event``), or None when tracefs
    cannot be read here (not mounted, not permitted)."""
    from .tracefs import TraceFS

    try:
        return TraceFS(mount=False).available_events()
    except (TracewatchError, OSError):
        return None


def check_event_patterns(path: str, patterns: Iterable[str], formats: Mapping[int, EventFormat], *,
                         kernel_events: Callable[[], list[str] | None] | None = None) -> list[str]:
    """Check event patterns (a script's ``@on``, ``--events``) against the events a file
    describes, as a live run checks them against the kernel's (``expand_event_globs``).

    A pattern no event of the file matches raises the live run's "unknown event ...; did
    you mean" error, naming the file, unless the kernel here knows such an event (a real
    event the recording did not include): that, or tracefs being unreadable so that the
    two cannot be told apart, is a note.  Returns the notes (lines for stderr).
    ``kernel_events`` gives the kernel's events (default: :func:`kernel_event_names`).
    """
    from .tracefs import expand_event_globs, unknown_event_message

    kernel_events = kernel_events or kernel_event_names

    in_file = sorted({fmt.full_name for fmt in formats.values()})
    listing = f"tracewatch list -i {path} shows its events"
    kernel: list[str] | None = None
    kernel_read = False
    notes: list[str] = []
    for pat in patterns:
        if expand_event_globs([pat], in_file, allow_empty=True):
            continue
        if not kernel_read:
            kernel, kernel_read = kernel_events(), True
        if kernel is None:
            notes.append(f"{path}: {unknown_event_message(pat, in_file, listing=listing)} "
                         "(tracefs is not readable here to tell whether the kernel has it)")
        elif expand_event_globs([pat], kernel, allow_empty=True):
            notes.append(f"{path} has no {pat!r} events: the kernel has them, the recording did not include them")
        else:
            raise TracewatchError(f"{path}: {unknown_event_message(pat, in_file, listing=listing)}")
    return notes


def short_records(path: str, formats: Mapping[int, EventFormat], type_id: np.ndarray, length: np.ndarray,
                  cpu: np.ndarray) -> tuple[int, TraceFormatError] | None:
    """(row, error) for the first record too short for its event's format
    (``EventFormat.min_record_size``), or None.  Such a record means the format or the
    data is damaged, and every value read past the record's end would be wrong.  The
    arrays describe the records in merged order; the caller delivers the events before
    that row, then raises the error."""
    if not len(type_id):
        return None
    present = np.flatnonzero(np.bincount(type_id))
    need = np.zeros(int(present[-1]) + 1, np.int32)
    for t in present.tolist():
        fmt = formats.get(t)
        if fmt is not None:
            need[t] = fmt.min_record_size[0]
    short = length < need[type_id]
    if not short.any():
        return None
    first = int(np.argmax(short))
    same_type = int(np.count_nonzero(short & (type_id == type_id[first])))
    return first, _short_record_error(path, formats[int(type_id[first])], same_type, int(length[first]),
                                      int(cpu[first]))


def short_records_by_type(path: str, formats: Mapping[int, EventFormat], index) -> tuple[int, TraceFormatError] | None:
    """:func:`short_records` of a ``TypeIndex`` (rows grouped by type, each type's in merged
    order): (merged position, error) of the first short record, or None."""
    found: tuple[int, TraceFormatError] | None = None
    for k, t in enumerate(index.type_id.tolist()):
        fmt = formats.get(t)
        lo, hi = int(index.bounds[k]), int(index.bounds[k + 1])
        if fmt is None or hi <= lo:
            continue
        lengths = index.length[lo:hi]
        need = fmt.min_record_size[0]
        if lengths.min() >= need:
            continue
        short = np.flatnonzero(lengths < need)
        row = lo + int(short[0])
        pos = int(index.pos[row])
        if found is None or pos < found[0]:
            found = pos, _short_record_error(path, fmt, len(short), int(index.length[row]), int(index.cpu[row]))
    return found


def _short_record_error(path: str, fmt: EventFormat, count: int, length: int, cpu: int) -> TraceFormatError:
    size, field = fmt.min_record_size
    name = field.name if field is not None else "?"
    return TraceFormatError(
        f"event {fmt.name}: {count} records are shorter than its format says (the first has {length} "
        f"bytes; its field {name} needs {size}): the format or the data is damaged", path=path, cpu=cpu)


class FileSource:
    """Events of a trace.dat file, ``chunk_events`` at a time."""

    live = False

    def __init__(self, path: str, *, keep_going: bool = False, chunk_events: int = 262_144,
                 whole_bytes: int = WHOLE_MERGE_BYTES, window_pages: int = 1024) -> None:
        self.path = path
        self.reader = open_reader(path)
        self.keep_going = keep_going
        self.chunk_events = chunk_events
        #: files with more bytes of event pages than this are merged in windows by chunks() ...
        self.whole_bytes = whole_bytes
        #: ... of this many pages per CPU
        self.window_pages = window_pages
        self.context = TraceContext(self.reader.formats, self.reader.symbols)
        self.damage: list[TraceFormatError] = []

    @property
    def formats(self):
        return self.reader.formats

    @property
    def merges_whole(self) -> bool:
        """Whether the file is small enough (``whole_bytes``) to be merged whole: then
        :meth:`chunks` merges it at once, and whole-file :meth:`split` batches are fine."""
        return self.reader.data_bytes <= self.whole_bytes

    def chunks(self) -> Iterator[EventChunk]:
        """The file's events in trace-cmd's order, ``chunk_events`` at a time.

        Up to ``whole_bytes`` of event pages, the file is merged whole (the fastest
        way); a larger one a window of pages at a time
        (``TraceDatReader.merged_parts``), so that memory does not grow with the file.
        On damage, every event before it comes first, then the error.
        """
        buffers = self._buffers()
        parts = self.reader.merged_parts(self.chunk_events, keep_going=self.keep_going,
                                         window_pages=self.window_pages, whole_bytes=self.whole_bytes)
        try:
            while True:
                try:
                    part = next(parts)
                except StopIteration as end:  # the merge returns its damage list
                    self.damage = list(end.value or [])
                    return
                self.damage = list(part.damage)
                short = short_records(self.path, self.reader.formats, part.type_id, part.length, part.cpu)
                if short is not None:
                    part = part.take(slice(0, short[0]))
                yield EventChunk.from_index(self.context, buffers, part, self.reader.little_endian)
                if short is not None:
                    raise short[1]
        except TraceFormatError as e:
            self.damage = list(getattr(e, "damage", None) or [e])
            raise

    def batches(self, events: str | None = None) -> Iterator["EventBatch"]:
        """Columnar batches, one per event type per chunk; ``events`` is a glob (``"sched:*"``)."""
        if not self.merges_whole:
            # too big to index whole: the chunks, merged a window of pages at a time
            only = _matcher(events)
            for chunk in self.chunks():
                for batch, _pos in chunk.batches(only=only):
                    yield batch
            return
        index, error, stop = self._type_index(events)
        buffers = self._buffers()
        for start in range(0, stop, self.chunk_events):
            for batch, _pos in split_type_index(self.context, buffers, index, start=start,
                                                stop=min(start + self.chunk_events, stop),
                                                little=self.reader.little_endian):
                yield batch
        if error is not None:
            raise error

    def split(self, events: str | None = None, *, only: Callable[[EventFormat], bool] | None = None
              ) -> Iterator[tuple[EventBatch, np.ndarray]]:
        """The whole file as one batch per event type (type id order), each with its rows'
        positions in the file's event order (trace-cmd's), like ``EventChunk.batches``.

        The fast path: the merge writes each event straight into its type's rows
        (``TraceDatReader.type_index``); the merged arrays are never built.
        """
        index, error, stop = self._type_index(events, only)
        yield from split_type_index(self.context, self._buffers(), index, stop=stop, little=self.reader.little_endian)
        if error is not None:
            raise error

    def _type_index(self, events: str | None, only: Callable[[EventFormat], bool] | None = None):
        by_glob = _matcher(events)
        if by_glob is not None:
            only = by_glob if only is None else (lambda f, a=by_glob, b=only: a(f) and b(f))
        formats = self.reader.formats
        types = None if only is None else [t for t, fmt in formats.items() if only(fmt)]
        try:
            index, error = self.reader.type_index(keep_going=self.keep_going, types=types), None
        except TraceFormatError as e:
            index = getattr(e, "partial", None)
            if index is None:
                raise
            error = e
        self.damage = list(index.damage)
        # (index, error, stop): the events before merged position `stop` are good, then raise `error`
        short = short_records_by_type(self.path, formats, index)
        if short is not None:
            return index, short[1], short[0]
        return index, error, index.total

    def check_events(self, patterns: Iterable[str]) -> list[str]:
        """Notes for event patterns the file has no events of (see :func:`check_event_patterns`,
        which raises for a pattern neither the file nor the kernel knows)."""
        return check_event_patterns(self.path, patterns, self.reader.formats)

    def _buffers(self) -> list:
        return [self.reader.cpu_buffer(c)[0] for c in range(self.reader.cpus)]

    def events(self, events: str | None = None) -> Iterator["Event"]:
        """Every event (matching the ``events`` glob) as an :class:`Event`, in time order."""
        only = _matcher(events)
        for chunk in self.chunks():
            yield from chunk.events(only=only)

    def __iter__(self) -> Iterator["Event"]:
        return self.events()

    def lost_events(self) -> dict[int, int]:
        """Events lost per CPU, from the pages' missed-events marks (-1: some, count unknown)."""
        out = {}
        for cpu, le in self.reader.lost_events().items():
            out[cpu] = -1 if le.unknown_pages and not le.lost else le.lost
        return out

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> "FileSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_trace(path: str, *, keep_going: bool = False) -> FileSource:
    """Open a trace.dat file (or ``-``, standard input) for reading events::

        with tracewatch.open_trace("trace.dat") as t:
            for ev in t.events("sched:sched_switch"):
                print(ev.prev_comm, ev.next_comm, ev.common_ts)
            for b in t.batches("raw_syscalls:sys_enter"):
                print(len(b), b.id[:10])
    """
    return FileSource(path, keep_going=keep_going)
