"""The ``context`` argument perf passes to every handler, and the functions that read it.

perf hands scripts an opaque capsule around its one global scripting context,
which always describes the event being handled; the functions of its built-in
``perf_trace_context`` module read the event's common fields through it.  Here
that context is one :class:`PerfContext` whose ``event`` the handler adapters
set before each call: no object is made per event.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PerfContext", "perf_script_context", "common_pc", "common_flags", "common_lock_depth",
    "perf_sample_insn", "perf_sample_srccode", "perf_sample_srcline", "perf_set_itrace_options",
]


class PerfContext:
    """Opaque to scripts; ``event`` is the :class:`~tracewatch.stream.batch.Event` being handled."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: Any = None

    def __repr__(self) -> str:
        return "<perf_trace_context capsule>"


#: the one context every handler receives (perf's module attribute of the same name)
perf_script_context = PerfContext()


def _common_field(context: PerfContext, name: str) -> int:
    # an event format without the field (lock_depth is gone since Linux 3.x) reads as 0, as in perf
    return getattr(context.event, name, 0) if context.event is not None else 0


def common_pc(context: PerfContext) -> int:
    """The event's preempt count (``common_preempt_count``)."""
    return _common_field(context, "common_preempt_count")


def common_flags(context: PerfContext) -> int:
    """The event's irq flags (``common_flags``; Core.trace_flag_str names them)."""
    return _common_field(context, "common_flags")


def common_lock_depth(context: PerfContext) -> int:
    """The event's BKL depth (``common_lock_depth``; 0 on kernels that no longer record it)."""
    return _common_field(context, "common_lock_depth")


# A tracepoint sample read from a trace.dat file has no instruction bytes nor
# source location: these return what perf returns for such samples.
def perf_sample_insn(context: PerfContext) -> None:
    return None


def perf_sample_srcline(context: PerfContext) -> tuple[None, int]:
    return (None, 0)


def perf_sample_srccode(context: PerfContext) -> tuple[None, int, None]:
    return (None, 0, None)


def perf_set_itrace_options(context: PerfContext, options: str) -> int:
    """Instruction-trace decoding options: there is no instruction trace here, so nothing to set."""
    return 0
