"""The source seam: what dispatch, scripts and tools may ask of an event source.

A source is anything that hands out a trace's events as time-ordered
:class:`~tracewatch.stream.chunk.EventChunk` objects: a trace.dat file
(:class:`~tracewatch.sources.file.FileSource`), the live kernel
(:class:`~tracewatch.sources.session.LiveSession`), or pages held in memory
(:class:`tracewatch.testing.MemorySource`, the double for tests, as httpx's
``MockTransport`` stands in for its ``BaseTransport``).  Code that consumes
events is written against :class:`EventSource` only, so it runs unchanged on
all three.

Two optional parts, each a Protocol of its own so that consumers ask
``isinstance`` rather than probing attributes:

* a source that can also give the whole trace as one batch per event type (the
  fast path of scripts with batch handlers only) is a :class:`SplittableSource`;
  :func:`splits_whole` says whether it may be asked to right now;
* a source that a stop can end while it runs (live: a duration, a signal) is a
  :class:`StoppableSource`: it tells its stop listeners when the handling
  should end, so that a consumer stops promptly rather than at the end of the
  input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from ..formats.context import TraceContext
    from ..formats.event_format import EventFormat
    from ..stream.batch import EventBatch
    from ..stream.chunk import EventChunk

__all__ = ["EventSource", "SplittableSource", "StoppableSource", "splits_whole"]


@runtime_checkable
class EventSource(Protocol):
    """A trace's events, a chunk at a time, in trace-cmd's order.

    * ``live``: True when the events come from the running kernel (a script's
      timers and ``dump()`` then act while the trace goes on);
    * ``context``: what the trace's events share (formats, symbols, comm lookup);
    * ``formats``: the trace's event types by id (a dispatcher compiles its
      routes from them before the first event);
    * :meth:`chunks`: the events, each chunk in time order and every chunk after
      the one before; a source of damaged input yields what came before the
      damage, then raises;
    * :meth:`lost_events`: events the ring buffer lost, per CPU (-1: some, number
      unknown), as known so far (a live source's count grows while it runs);
    * :meth:`close`: release what the source holds (files, tracefs instances);
      called once the consumer is done, on every way out.
    """

    live: bool
    context: "TraceContext"

    @property
    def formats(self) -> "Mapping[int, EventFormat]": ...

    def chunks(self) -> "Iterator[EventChunk]": ...

    def lost_events(self) -> dict[int, int]: ...

    def close(self) -> None: ...


@runtime_checkable
class SplittableSource(EventSource, Protocol):
    """An :class:`EventSource` that can also hand over the whole trace as one batch per type.

    ``merges_whole``: whether the trace is small enough for that right now;
    :meth:`split` gives ``(batch, positions)`` pairs, one per event type, each row's
    position being its place in the order :meth:`~EventSource.chunks` would give
    (so a consumer that needs order across types can still recover it).
    """

    @property
    def merges_whole(self) -> bool: ...

    def split(self, events: str | None = None, *,
              only: "Callable[[EventFormat], bool] | None" = None
              ) -> "Iterator[tuple[EventBatch, np.ndarray]]": ...


@runtime_checkable
class StoppableSource(EventSource, Protocol):
    """An :class:`EventSource` a stop can end while it runs.

    :meth:`add_stop_listener`: call ``listener()`` (from any thread or a signal
    handler, at most once) when a stop should end the handling; the source then
    ends its chunks too.
    """

    def add_stop_listener(self, listener: "Callable[[], None]") -> None: ...


def splits_whole(source: EventSource) -> bool:
    """Whether ``source`` offers the whole-trace :meth:`~SplittableSource.split` now."""
    return isinstance(source, SplittableSource) and bool(source.merges_whole)
