"""Where raw ring-buffer pages come from.

* :mod:`.tracefs`: control of tracefs (mount, private instances, events,
  filters, uprobes, cleanup of what killed runs left behind);
* :mod:`.live`: per-CPU readers of a live instance, yielding raw pages;
* :mod:`.file`: a trace.dat file as the same stream of chunks;
* :mod:`._source`: :class:`EventSource`, the contract every source keeps (and
  that dispatch, scripts and tools rely on).

The names below are imported on first use, so a run over a file does not load
the live readers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "EventSource",
    "SplittableSource",
    "StoppableSource",
    "splits_whole",
    "TraceFS",
    "Instance",
    "find_tracefs",
    "cleanup_stale",
    "LiveSource",
    "CpuReader",
    "ReadCpuReader",
    "MmapCpuReader",
    "PageBatch",
    "mmap_supported",
]

_HOME = {"EventSource": "._source", "SplittableSource": "._source", "StoppableSource": "._source",
         "splits_whole": "._source",
         "TraceFS": ".tracefs", "Instance": ".tracefs", "find_tracefs": ".tracefs", "cleanup_stale": ".tracefs",
         "LiveSource": ".live", "CpuReader": ".live", "ReadCpuReader": ".live", "MmapCpuReader": ".live",
         "PageBatch": ".live", "mmap_supported": ".live"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value
    return value
