"""LiveSession gives loss marks of unknown size (-1) the count the kernel's per-CPU stats give."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from tracewatch.errors import CaptureError
from tracewatch.sources.session import LiveSession


class FakeStats:
    """per_cpu_stats as tracefs gives it (keys with underscores); None: the file cannot be read."""

    def __init__(self, per_cpu: dict[int, dict | None]) -> None:
        self.per_cpu = per_cpu

    def per_cpu_stats(self, cpu: int) -> dict:
        st = self.per_cpu[cpu]
        if st is None:
            raise CaptureError("no stats")
        return st


def session_with(stats: FakeStats) -> LiveSession:
    s = LiveSession.__new__(LiveSession)  # only the accounting: no kernel needed
    s.instance = stats
    s._lost_accounted = {}
    return s


def chunk(cpus: list[int], missed: list[int]) -> SimpleNamespace:
    return SimpleNamespace(cpu=np.array(cpus, np.int32), missed_before=np.array(missed, np.int64))


def test_unknown_losses_take_the_stats_difference_since_the_last_accounted():
    stats = FakeStats({0: {"overrun": 30, "dropped_events": 2}, 1: {"overrun": 5, "dropped_events": 0}})
    s = session_with(stats)
    c = chunk([0, 1, 0, 0, 1], [-1, 0, 0, -1, 5])
    s._count_losses(c)
    # CPU 0: 32 lost so far, the chunk's first unknown mark gets them, the later one 0;
    # CPU 1: a known count is taken as it is, and accounted for
    assert c.missed_before.tolist() == [32, 0, 0, 0, 5]
    stats.per_cpu[0]["overrun"] = 40
    stats.per_cpu[1]["overrun"] = 9
    c = chunk([0, 1], [-1, -1])
    s._count_losses(c)
    assert c.missed_before.tolist() == [10, 4]  # 40 + 2 dropped, less the 32 already given


def test_where_the_stats_say_nothing_new_or_nothing_the_count_stays_unknown():
    s = session_with(FakeStats({0: {"overrun": 0, "dropped_events": 0}, 1: None}))
    c = chunk([0, 1, 1], [-1, -1, -1])
    s._count_losses(c)
    assert c.missed_before.tolist() == [-1, -1, -1]
