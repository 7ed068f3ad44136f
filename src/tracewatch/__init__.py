"""tracewatch: watch Linux kernel trace streams and hand every event to Python code.

The script API::

    from tracewatch import on, on_batch, every, at_start, at_end, on_lost, Map, hist, lhist

and the reading API::

    from tracewatch import open_trace
    with open_trace("trace.dat") as t:
        for ev in t.events("sched:*"): ...
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import CaptureError, FilterError, ScriptError, TraceFormatError, TracewatchError
from .script.aggregations import Map, avg, count, stats
from .script.api import at_end, at_start, every, on, on_batch, on_lost
from .script.histogram import hist, lhist
from .script.pairing import Pairing, SyscallPairing, pair_arrays
from .sources.file import FileSource, open_trace
from .stream.batch import Event, EventBatch
from .stream.filter import Filter

__all__ = [
    "__version__",
    # scripting
    "on", "on_batch", "every", "at_start", "at_end", "on_lost",
    "Map", "count", "avg", "stats", "hist", "lhist",
    "Pairing", "SyscallPairing", "pair_arrays",
    # reading
    "open_trace", "FileSource", "Event", "EventBatch", "Filter",
    # errors
    "TracewatchError", "TraceFormatError", "FilterError", "CaptureError", "ScriptError",
]
