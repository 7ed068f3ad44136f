"""tracewatch: watch Linux kernel trace streams and hand every event to Python code.

The script API::

    from tracewatch import on, on_batch, every, at_start, at_end, on_lost, Map, hist, lhist
    from tracewatch import probe, on_probe      # function probes (uprobes)

and the reading API::

    from tracewatch import open_trace
    with open_trace("trace.dat") as t:
        for ev in t.events("sched:*"): ...
"""

from __future__ import annotations

from .version import __version__

from .errors import CaptureError, FilterError, ScriptError, TraceFormatError, TracewatchError

# The rest is imported on first use (PEP 562), so that `tracewatch report` does
# not pay for the scripting modules at start-up.
_LAZY = {
    "Map": "script.aggregations", "count": "script.aggregations", "avg": "script.aggregations",
    "stats": "script.aggregations",
    "on": "script.api", "on_batch": "script.api", "every": "script.api", "at_start": "script.api",
    "at_end": "script.api", "on_lost": "script.api", "probe": "script.api", "on_probe": "script.api",
    "hist": "script.histogram", "lhist": "script.histogram",
    "Pairing": "script.pairing", "SyscallPairing": "script.pairing", "pair_arrays": "script.pairing",
    "FileSource": "sources.file", "open_trace": "sources.file",
    "Event": "stream.batch", "EventBatch": "stream.batch",
    "Filter": "stream.filter",
    "dump": "recorder", "Window": "recorder", "EventSequence": "recorder", "Sequence": "recorder", "Threshold": "recorder",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracewatch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "__version__",
    # scripting
    "on", "on_batch", "every", "at_start", "at_end", "on_lost", "probe", "on_probe",
    "Map", "count", "avg", "stats", "hist", "lhist",
    "Pairing", "SyscallPairing", "pair_arrays", "dump", "Window", "EventSequence", "Threshold",
    "Sequence",  # the first release's name of EventSequence, kept as an alias
    # reading
    "open_trace", "FileSource", "Event", "EventBatch", "Filter",
    # errors
    "TracewatchError", "TraceFormatError", "FilterError", "CaptureError", "ScriptError",
]
