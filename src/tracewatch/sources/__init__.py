"""Where raw ring-buffer pages come from.

* :mod:`.tracefs`: control of tracefs (mount, private instances, events,
  filters, uprobes, cleanup of what killed runs left behind);
* :mod:`.live`: per-CPU readers of a live instance, yielding raw pages.
"""

from .live import CpuReader, LiveSource, MmapCpuReader, PageBatch, ReadCpuReader, mmap_supported
from .tracefs import Instance, TraceFS, cleanup_stale, find_tracefs

__all__ = [
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
