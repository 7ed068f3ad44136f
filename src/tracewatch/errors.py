"""The exception tree of tracewatch: every error a user can act on, in one module.

    TracewatchError
     +-- UsageError           the command line is wrong (options that conflict or do not parse)
     +-- TraceFormatError     the input is not a trace, or is damaged (file, cpu, page, offset)
     |    +-- PrintFormatError    an event's print fmt cannot be used at all
     +-- FilterError          a filter expression does not parse (column)
     +-- CaptureError         live tracing could not be set up or read
     |    +-- ProbeSpecError      a -P probe spec does not parse or cannot be probed
     |    +-- SymbolError         a function cannot be found or probed in an ELF file
     |    +-- ElfFormatError      a file is not an ELF file tracewatch can read
     +-- ScriptError          a user script failed (file, line)
          +-- HandlerError        a handler raised and the run was told to stop
          +-- HandlersStuckError  handlers did not return after a stop and were abandoned

The CLI prints a TracewatchError as one line (``tracewatch: error: ...``, plus an
optional ``hint:`` line) and exits with status 2.  Anything that is not a
TracewatchError is a bug in tracewatch: the CLI prints its traceback and asks
for a report.  tests/unit/test_errors.py checks that this tree and the classes agree.
"""

from __future__ import annotations

__all__ = [
    "TracewatchError",
    "UsageError",
    "TraceFormatError",
    "PrintFormatError",
    "FilterError",
    "CaptureError",
    "ProbeSpecError",
    "SymbolError",
    "ElfFormatError",
    "ScriptError",
    "HandlerError",
    "HandlersStuckError",
]


class TracewatchError(Exception):
    """Base of every error tracewatch reports to a user as one line."""

    hint: str | None = None


class UsageError(TracewatchError):
    """The command line is wrong: options that conflict, or values that do not parse."""


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


class PrintFormatError(TraceFormatError):
    """A print fmt cannot be used at all (not raised for formats libtraceevent
    also fails on: those render as ``[FAILED TO PARSE] field=value ...``)."""


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


class ProbeSpecError(CaptureError):
    """A ``-P`` probe spec does not parse, or names something that cannot be probed."""


class SymbolError(CaptureError):
    """A function cannot be found, or cannot be probed, in an ELF file."""


class ElfFormatError(CaptureError):
    """The file is not an ELF file tracewatch can read, or it is damaged."""


class ScriptError(TracewatchError):
    """A user script could not be loaded or a handler failed."""


class HandlerError(ScriptError):
    """A handler raised and the run was told to stop (``--on-error=stop``)."""


class HandlersStuckError(ScriptError):
    """The run ended with its handlers abandoned (stuck after SIGTERM/SIGINT): exit status 2."""
