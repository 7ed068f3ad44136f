"""PrintFormat: the compiled print fmt of one event type (the package's public API)."""

from __future__ import annotations

from typing import Callable

from ...errors import PrintFormatError
from ..event_format import EventFormat
from ..symbols import TraceSymbols
from ._compile import (Renderer, _BprintRenderer, _Col, _compile_segments, _Compiler, _eval_col, _FailedRenderer,
                       _MapCol, _symbol_view, _SymbolView)
from ._parse import FIELD, _Arg, _ArgParser, _ParseFailure
from ._segments import Segment, split_format


def _is_bprint(fmt: EventFormat) -> bool:
    """ftrace:bprint (trace_printk): its text follows the printk format each record points to."""
    return fmt.system == "ftrace" and fmt.name == "bprint"


class _LazySymbolView:
    """A _SymbolView built on the first lookup: building one walks all of kallsyms, and
    most conversions (a string, a number) never look a symbol up."""

    def __init__(self, symbols: TraceSymbols) -> None:
        self._symbols = symbols

    def __getattr__(self, name: str):
        return getattr(_symbol_view(self._symbols), name)


class PrintFormat:
    """The compiled ``print fmt`` of one event type.

    ``PrintFormat.parse(fmt)`` does all parsing; ``render(payload, symbols)``
    returns the text ``trace-cmd report`` prints after the event name for one
    record (``payload`` starts at ``common_type``).
    """

    def __init__(self, fmt: EventFormat, format_text: str, segments: list[Segment] | None,
                 failure: str | None) -> None:
        self.event = fmt
        #: the format string as written (escapes kept); "" when parsing failed
        self.format_text = format_text
        #: why libtraceevent cannot use this print fmt (None when it can)
        self.failure = failure
        #: the format cut into literal text and conversions bound to their arguments
        #: (libtraceevent's print_cache, which ``report -R`` matches fields to);
        #: None when libtraceevent has none: the print fmt cannot be used, or the
        #: event is ftrace:bprint (each record brings its own format)
        self.segments = segments
        self._is_bprint = _is_bprint(fmt)
        self._renderers: dict[tuple[int, bool], Renderer] = {}

    @classmethod
    def parse(cls, fmt: EventFormat, *, long_size: int = 8, little_endian: bool = True) -> "PrintFormat":
        """Parse ``fmt.print_fmt`` once.

        A print fmt that libtraceevent cannot parse either gives a PrintFormat
        whose render prints ``[FAILED TO PARSE]`` and the fields (``failure``
        says why).  PrintFormatError is raised only when ``fmt`` has no print
        fmt line at all.
        """
        if not fmt.print_fmt:
            raise PrintFormatError(f"event {fmt.full_name} has no print fmt line")
        failure = segments = None
        try:
            text, args = _ArgParser(fmt, long_size).parse(fmt.print_fmt)
            if not args and fmt.system == "ftrace":
                # old ftrace formats had no arguments: libtraceevent passes every field
                args = []
                for f in fmt.event_fields:
                    a = _Arg(FIELD, f.name)
                    a.field = f
                    args.append(a)
            if not _is_bprint(fmt):
                segments = split_format(text, args)
        except (_ParseFailure, RecursionError) as e:
            text, failure = "", str(e)
        pf = cls(fmt, text, segments, failure)
        pf._renderer(long_size, little_endian)  # compile now: errors belong to parse time
        return pf

    @property
    def failed(self) -> bool:
        """True when this event renders as ``[FAILED TO PARSE] ...``."""
        return self.failure is not None

    def render(self, payload: bytes | memoryview, symbols: TraceSymbols) -> str:
        """The info text of one record, as libtraceevent's tep_print_event("%s", INFO)."""
        sv = _symbol_view(symbols)
        r = self._renderers.get((sv.long_size, sv.little))
        if r is None:
            r = self._renderer(sv.long_size, sv.little)
        return r(payload, len(payload), sv)

    def _renderer(self, long_size: int, little: bool) -> Renderer:
        key = (long_size, little)
        r = self._renderers.get(key)
        if r is not None:
            return r
        compiler = _Compiler(long_size, little)
        if self._is_bprint:
            r = _BprintRenderer(self.event, compiler)
        elif self.segments is None:
            r = _FailedRenderer(self.event, compiler)
        else:
            r = _compile_segments(self.segments, compiler)
        self._renderers[key] = r
        return r

    def segment_text(self, index: int, symbols: TraceSymbols) -> Callable[[bytes | memoryview], str]:
        """The text libtraceevent's print_parse_data writes for conversion ``segments[index]``
        of one record: how ``report -R`` prints a field passed to that conversion."""
        compiler = _Compiler(symbols.long_size, symbols.little_endian)
        render = _compile_segments([self.segments[index]], compiler)
        view = _LazySymbolView(symbols)

        def text(payload: bytes | memoryview) -> str:
            return render(payload, len(payload), view)  # type: ignore[arg-type]

        return text

    def batch_plan(self, symbols: TraceSymbols) -> "PrintFormatBatch":
        """How to render many records of this event at once (see :class:`PrintFormatBatch`)."""
        key = (symbols.long_size, symbols.little_endian)
        r = self._renderers.get(key) or self._renderer(*key)
        batch = getattr(r, "_batch", None)
        if batch is None:  # bprint, [FAILED TO PARSE]: the whole text per record
            return PrintFormatBatch("%s", (r,), symbols)
        return PrintFormatBatch(batch[0], batch[1], symbols)

    def __repr__(self) -> str:
        state = f" failed: {self.failure}" if self.failure else ""
        return f"<PrintFormat {self.event.full_name}{state}>"


class PrintFormatBatch:
    """The print fmt text of many records of one event type, as columns.

    ``template % values`` is the text :meth:`PrintFormat.render` gives for a
    record, where ``values`` is that record's row of :meth:`columns`.  Values
    that are plain reads of the record's fixed bytes are read for every record
    at once from ``rows``; the others are computed record by record, in the
    order given (what libtraceevent remembers between records stays per event).
    """

    def __init__(self, template: str, getters: tuple, symbols: TraceSymbols) -> None:
        #: a Python % template (literal ``%`` written ``%%``)
        self.template = template
        self._getters = getters
        self._symbols = symbols  # its _SymbolView is built only if a value needs it (kallsyms parse)
        cols = [getattr(g, "_col", None) for g in getters]
        self._cols = cols
        #: bytes of each record :meth:`columns` needs in ``rows``
        self.width = max([(c.inner if isinstance(c, _MapCol) else c).offset
                          + (c.inner if isinstance(c, _MapCol) else c).size
                          for c in cols if c is not None], default=0)

    def columns(self, rows, lengths, payloads: Callable[[], list[bytes]]) -> list[list]:
        """One list of values per conversion of the template, one value per record.

        ``rows``: (N, ≥ width) uint8 matrix of the records' first bytes, zero past
        each record's end; ``lengths``: their sizes (numpy); ``payloads()``: the
        records as bytes (asked for only when some value needs code per record).
        """
        sv: _SymbolView | None = None
        little = self._symbols.little_endian
        out: list[list] = []
        records: list[bytes] | None = None
        for g, c in zip(self._getters, self._cols):
            if isinstance(c, _Col):
                out.append(_eval_col(c, rows, lengths, little))
            elif isinstance(c, _MapCol):
                values = _eval_col(c.inner, rows, lengths, little)
                fn = c.fn
                sv = sv or _symbol_view(self._symbols)
                table = {v: fn(v, sv) for v in set(values)}
                out.append(list(map(table.__getitem__, values)))
            else:
                if records is None:
                    records = payloads()
                sv = sv or _symbol_view(self._symbols)
                out.append([g(d, len(d), sv) for d in records])
        return out
