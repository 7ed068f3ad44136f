"""The flight recorder: keep the newest raw pages in memory, dump them when a trigger says so.

Pieces (data flows top to bottom)::

    page_ring.PageRing        per-CPU rings of raw pages, one byte budget (--keep), evicted by time
    dump.FlightRecorder       tee of the page reader: ring + pending dumps + DumpWriter policy
    dump.PendingDump          one dump collecting its post window (--post), cut at its end
    dump.DumpWriter           trace.dat + JSON sidecar, names, rotation, cooldown, free space
    history                   Window, EventSequence, Threshold: stateful trigger criteria made short

A script asks for a dump with :func:`dump`; it reaches the recorder the runner
made current in the run context (:mod:`tracewatch.stream.run_context`, where
``script.api`` keeps the handlers being registered too); :func:`set_current_recorder`
sets it there.  Without a recorder (``tracewatch run -i FILE``
without ``--keep``), the request is recorded in :data:`unserved_requests`, one
note is printed, and the run goes on.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

from ..stream.run_context import current_run, set_current
from .dump import DumpRequest, DumpResult, DumpWriter, FlightRecorder, PendingDump, ReplaySource, replay_pages
from .history import EventSequence, Sequence, SequenceMatch, SlowCall, Threshold, Window
from .page_ring import PageRing, RingStats, parse_size

__all__ = [
    "dump",
    "current_recorder",
    "set_current_recorder",
    "unserved_requests",
    "FlightRecorder",
    "PageRing",
    "RingStats",
    "DumpWriter",
    "PendingDump",
    "DumpRequest",
    "DumpResult",
    "Window",
    "EventSequence",
    "Sequence",
    "SequenceMatch",
    "Threshold",
    "SlowCall",
    "parse_size",
    "replay_pages",
    "ReplaySource",
]

#: dump() requests made while no recorder was active (newest 1000), and how many in all.
unserved_requests: deque[DumpRequest] = deque(maxlen=1000)
unserved_count = 0
_noted = False


def current_recorder() -> FlightRecorder | None:
    """The recorder :func:`dump` reaches (the run context's), or None."""
    return current_run().recorder


def set_current_recorder(recorder: FlightRecorder | None) -> FlightRecorder | None:
    """Make ``recorder`` the one :func:`dump` reaches; returns the previous one (restore it after the run)."""
    global _noted
    _noted = False
    return set_current("recorder", recorder)


def dump(reason: str = "dump", before: str | int | float | None = None, after: str | int | float | None = None,
         *, event: Any = None, ts: int | None = None) -> PendingDump | None:
    """Write a flight-recorder dump: the events held before the trigger and ``after`` it.

    ``reason`` names the file and goes in its sidecar.  ``before`` / ``after``
    are durations (``"500ms"``, ``"2s"``, seconds); None takes the run's
    ``--keep``/``--post`` settings (``before`` None: everything held).  The
    trigger time is ``event.common_ts`` when an event is given (its report
    line goes in the sidecar), else ``ts``, else the time of what the calling
    handler is handling (its event, a timer's deadline, a batch handler's last
    event), else the newest time the recorder holds.  Returns the pending dump, or None when the trigger was counted
    but not dumped (cooldown, disk nearly full, too many dumps collecting,
    or no recorder in this run).
    """
    global unserved_count, _noted
    rec = current_run().recorder
    if rec is None:
        when = ts if ts is not None else getattr(event, "common_ts", None)
        unserved_requests.append(DumpRequest(reason=reason, trigger_ts=int(when or 0),
                                             event=None if event is None else str(event).strip()))
        unserved_count += 1
        if not _noted:
            _noted = True
            print(f"tracewatch: note: dump(reason={reason!r}) requested, but this run keeps no flight recorder "
                  "(use `tracewatch flight`, or --keep SIZE --out DIR); further requests are only counted",
                  file=sys.stderr)
        return None
    if ts is None and event is None:
        # the event the calling handler is handling (found without any per-event bookkeeping)
        from ..stream.dispatch import current_trace_time

        ts = current_trace_time()
    return rec.trigger(reason, ts, event=event, before=before, after=after)
