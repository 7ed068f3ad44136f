"""TraceContext: what the events of one trace share (formats, symbols, comm lookup, the
renderer of report lines).

It lives with the formats because it is their meaning for one trace; how a line is
rendered is not decided here: the renderer is given (injected) by whoever makes the
context or, failing that, by whoever asks for a line (``stream.batch`` gives
``tracewatch report``'s).  So formats never import the report side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Protocol

if TYPE_CHECKING:
    from .event_format import EventFormat
    from .symbols import TraceSymbols

__all__ = ["TraceContext", "LineRenderer", "LineRendererFactory"]


class LineRenderer(Protocol):
    """Renders one event as a text line (``formats.report_text.ReportFormatter`` is one)."""

    def line(self, cpu: int, ts: int, payload: bytes, fmt: "EventFormat | None") -> str: ...


#: makes the renderer of a trace from its symbols and formats (called once per context)
LineRendererFactory = Callable[["TraceSymbols", Mapping[int, "EventFormat"]], LineRenderer]


class TraceContext:
    """What events of one trace share: formats, symbols, comm lookup, report text.

    One per source (a trace.dat file or a live session).  ``line_renderer`` makes the
    renderer of the trace's lines on first use; without it the caller of
    :meth:`report_line` says which (``str(event)``: ``tracewatch report``'s line).
    """

    def __init__(self, formats: dict[int, "EventFormat"], symbols: "TraceSymbols",
                 line_renderer: LineRendererFactory | None = None) -> None:
        self.formats = formats
        self.symbols = symbols
        self._make_renderer = line_renderer
        self._renderer: LineRenderer | None = None
        #: per event type id: the Event class built for this trace (``stream.batch``'s cache)
        self.event_classes: dict[int, type] = {}

    def comm(self, pid: int) -> str:
        """The command name of ``pid`` as trace-cmd shows it (``<idle>`` for 0, ``<...>`` unknown)."""
        if pid == 0:
            return "<idle>"
        return self.symbols.cmdlines.by_pid.get(pid, "<...>")

    def remember_comm(self, pid: int, comm: str) -> None:
        """Record a comm learnt from the stream (live: sched events, /proc)."""
        self.symbols.cmdlines.by_pid[pid] = comm

    def report_line(self, cpu: int, ts: int, payload: bytes, fmt: "EventFormat | None",
                    default: LineRendererFactory | None = None) -> str:
        """The text line of one event (``payload``: its record), by the renderer this context
        was given, else by ``default`` (made once, on the first line)."""
        renderer = self._renderer
        if renderer is None:
            make = self._make_renderer or default
            if make is None:
                raise LookupError("this TraceContext was given no line renderer")
            renderer = self._renderer = make(self.symbols, self.formats)
        return renderer.line(cpu, ts, payload, fmt)
