"""A trace.dat file as an event source: the same chunks a live session yields.

:class:`FileSource` hands out the file's events in time order as
:class:`~tracewatch.stream.chunk.EventChunk` slices, so the dispatch code does
not know whether it reads a file or the kernel.  On damaged input it yields
every event before the damage and then raises the
:class:`~tracewatch.errors.TraceFormatError` (or, with ``keep_going``, skips
the damaged pages and lists them in ``damage``).
"""

from __future__ import annotations

from typing import Iterator

from ..errors import TraceFormatError
from ..formats.tracedat import TraceDatReader
from ..stream.batch import TraceContext
from ..stream.chunk import EventChunk

__all__ = ["FileSource"]


class FileSource:
    """Events of a trace.dat file, ``chunk_events`` at a time."""

    live = False

    def __init__(self, path: str, *, keep_going: bool = False, chunk_events: int = 262_144) -> None:
        self.path = path
        self.reader = TraceDatReader(path)
        self.keep_going = keep_going
        self.chunk_events = chunk_events
        self.context = TraceContext(self.reader.formats, self.reader.symbols)
        self.damage: list[TraceFormatError] = []

    @property
    def formats(self):
        return self.reader.formats

    def chunks(self) -> Iterator[EventChunk]:
        error: TraceFormatError | None = None
        try:
            index = self.reader.index(keep_going=self.keep_going)
        except TraceFormatError as e:
            index = getattr(e, "partial", None)
            if index is None:
                raise
            error = e
        self.damage = list(index.damage)
        buffers = [self.reader.cpu_buffer(c)[0] for c in range(self.reader.cpus)]
        whole = EventChunk.from_index(self.context, buffers, index, self.reader.little_endian)
        for start in range(0, len(whole), self.chunk_events):
            yield whole.slice(start, start + self.chunk_events)
        if error is not None:
            raise error

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
