"""The live session keeps the EventSource contract (as FileSource and MemorySource do,
tests/unit/test_event_source.py, with the same checker)."""

from __future__ import annotations

from tests.unit.test_event_source import check_event_source
from tracewatch.sources import EventSource, StoppableSource, splits_whole
from tracewatch.sources.session import LiveSession


def test_live_session_keeps_the_contract():
    # the command makes the events and ends the session: no timing in the test
    command = ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do cat /proc/version >/dev/null; done"]
    with LiveSession(["raw_syscalls:sys_enter"], command=command, duration=60.0) as s:
        assert isinstance(s, EventSource) and isinstance(s, StoppableSource) and s.live is True
        assert not splits_whole(s)  # a live run is never handed over whole
        check_event_source(s, min_events=8)
        assert s.command_status == 0
