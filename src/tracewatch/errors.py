"""The exception tree of tracewatch.

    TracewatchError
     +-- TraceFormatError   the input is not a trace, or is damaged (file, cpu, page, offset)
     +-- FilterError        a filter expression does not parse (column)
     +-- CaptureError       live tracing could not be set up or read
     +-- ScriptError        a user script failed (file, line)

Anything that is not a TracewatchError is a bug in tracewatch: the CLI prints
its traceback and asks for a report.
"""

from __future__ import annotations

__all__ = [
    "TracewatchError",
    "TraceFormatError",
    "FilterError",
    "CaptureError",
    "ScriptError",
]


class TracewatchError(Exception):
    """Base of every error tracewatch reports to a user as one line."""

    hint: str | None = None


class TraceFormatError(TracewatchError):
    """The input is not a trace tracewatch can read, or it is damaged.

    The message names where: the file, and where known the byte offset in the
    file, the CPU and the page.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        cpu: int | None = None,
        page: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.offset = offset
        self.cpu = cpu
        self.page = page
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        loc = []
        if self.cpu is not None:
            loc.append(f"CPU {self.cpu}")
        if self.page is not None:
            loc.append(f"page {self.page}")
        if self.offset is not None:
            loc.append(f"(file offset {self.offset:#x})" if loc else f"offset {self.offset:#x}")
        if loc:
            where.append(" ".join(loc))
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class FilterError(TracewatchError):
    """A filter expression (ftrace filter syntax) does not parse or type-check."""

    def __init__(self, message: str, expr: str = "", column: int | None = None) -> None:
        self.message = message
        self.expr = expr
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.column is None:
            return f"filter {self.expr!r}: {self.message}"
        return f"filter {self.expr!r}, column {self.column + 1}: {self.message}"


class CaptureError(TracewatchError):
    """Live tracing could not be set up, read, or torn down."""


class ScriptError(TracewatchError):
    """A user script could not be loaded or a handler failed."""
