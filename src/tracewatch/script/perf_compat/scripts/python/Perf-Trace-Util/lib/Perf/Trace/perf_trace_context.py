"""tracewatch's ``perf_trace_context`` module for ``perf script -s`` Python scripts.

perf builds this module into its binary; scripts call its functions with the
``context`` argument every handler receives.  Here ``context`` is a
:class:`tracewatch.script.perf_compat.context.PerfContext` that holds the event
being handled, and each function reads from it.
"""

from tracewatch.script.perf_compat.context import (  # noqa: F401 - re-exported names
    common_flags,
    common_lock_depth,
    common_pc,
    perf_sample_insn,
    perf_sample_srccode,
    perf_sample_srcline,
    perf_script_context,
    perf_set_itrace_options,
)

__all__ = [
    "common_pc", "common_flags", "common_lock_depth", "perf_sample_insn", "perf_sample_srccode",
    "perf_sample_srcline", "perf_set_itrace_options", "perf_script_context",
]
