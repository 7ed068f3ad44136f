"""Dispatcher.stop_handling: no handler is called after a stop, and what was not handled is counted.

Over a real trace (fixture e_mixed.v6.dat), chunk by chunk as a live source
hands them over.  The stop comes from inside a handler (as a signal handler
runs: between two bytecodes of the main thread) or from another thread (as
the duration's clock calls it); either way, handled + dropped_at_stop is what
the handlers would have been given without a stop.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import fixture_path
from tracewatch.sources.file import FileSource
from tracewatch.stream.dispatch import Dispatcher


def handler(pattern: str, func, where: str | None = None, batch: bool = False) -> SimpleNamespace:
    return SimpleNamespace(pattern=pattern, func=func, where=where, batch=batch)


def feed_all(d: Dispatcher) -> int:
    """Feed the fixture to ``d``; returns how many chunks there were."""
    n = 0
    with FileSource(str(fixture_path("e_mixed.v6.dat"))) as src:
        d.prepare(src.formats.values())
        for chunk in src.chunks():
            # smaller pieces, as a live session releases them: stops land between and inside chunks
            for part in chunk.split_at(chunk.ts[:: max(1, len(chunk) // 8)][1:]):
                d.feed(part)
                n += 1
    return n


def deliveries(handlers_of) -> int:
    """How many handler calls the fixture makes without a stop."""
    calls = [0]

    def count(_ev):
        calls[0] += 1

    d = Dispatcher(handlers_of(count))
    feed_all(d)
    assert d.dropped_at_stop == 0 and d.events_dispatched == calls[0]
    return calls[0]


SETUPS = {
    "one handler": lambda f: [handler("kmem:kmem_cache_alloc", f)],
    "interleaved": lambda f: [handler("kmem:kmem_cache_alloc", f), handler("kmem:kmem_cache_free", f),
                              handler("kmem:kfree", f)],
    "filtered": lambda f: [handler("kmem:*", f, where="common_pid > 1000"), handler("*:*", f)],
}


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("stop_after", [1, 777, 5000])
def test_a_stop_from_inside_a_handler_ends_the_handling_there(setup, stop_after):
    total = deliveries(SETUPS[setup])
    assert total > 5000
    calls = [0]
    d: Dispatcher

    def func(_ev):
        calls[0] += 1
        if calls[0] == stop_after:
            d.stop_handling()

    d = Dispatcher(SETUPS[setup](func))
    feed_all(d)
    assert calls[0] == stop_after  # not one call after the stop
    assert calls[0] + d.dropped_at_stop == total
    assert d.events_dispatched == calls[0]


def test_a_stop_from_another_thread_cuts_the_run_in_progress():
    total = deliveries(SETUPS["one handler"])
    calls = [0]
    stopped = threading.Event()
    d: Dispatcher

    def func(_ev):
        calls[0] += 1
        if calls[0] == 100:
            t = threading.Thread(target=lambda: (d.stop_handling(), stopped.set()))
            t.start()
            t.join()  # the stop happens while this handler runs, from the other thread

    d = Dispatcher(SETUPS["one handler"](func))
    feed_all(d)
    assert stopped.is_set()
    assert calls[0] == 100
    assert calls[0] + d.dropped_at_stop == total


def test_batch_handlers_and_timers_are_not_called_after_a_stop():
    batches, ticks = [], []
    d: Dispatcher

    def on_batch(b):
        batches.append(len(b))
        if len(batches) == 3:
            d.stop_handling()

    timer = SimpleNamespace(interval_ns=1_000_000, func=lambda: ticks.append(d.trace_time_now()))
    d = Dispatcher([handler("kmem:kmem_cache_alloc", on_batch, batch=True)], timers=[timer])
    feed_all(d)
    assert len(batches) == 3
    assert sum(batches) + d.dropped_at_stop == deliveries(SETUPS["one handler"])
    ticks_at_stop = len(ticks)
    assert ticks_at_stop > 0
    with FileSource(str(fixture_path("e_mixed.v6.dat"))) as src:
        d.feed(next(iter(src.chunks())))
    assert len(ticks) == ticks_at_stop and len(batches) == 3


def test_a_handler_error_after_a_cut_names_the_event_it_raised_on():
    """The cut moves the iterator to the end: the failing event is found from the count kept."""
    seen = []
    d: Dispatcher

    def func(ev):
        seen.append(ev)
        if len(seen) == 50:
            d.stop_handling()
            raise ValueError("boom")

    errors = []
    d = Dispatcher(SETUPS["one handler"](func), on_error="skip")
    d._report = lambda f, ev, exc: errors.append(ev)  # noqa: SLF001 - what the report names
    feed_all(d)
    assert len(seen) == 50 and errors == [seen[-1]]
    assert d.errors == 1


def test_lost_counts_of_zero_are_not_reported():
    """LiveSession gives a CPU's later unknown marks in a chunk 0 (its first carried the count)."""
    lost = []
    d = Dispatcher([], lost=[lambda cpu, n: lost.append((cpu, n))])
    chunk = SimpleNamespace(losses=lambda: iter([(0, 12, 5), (0, 0, 6), (1, -1, 7)]),
                            batches=lambda only=None: iter([]))
    d._feed(chunk)  # noqa: SLF001 - only the losses matter here
    assert lost == [(0, 12), (1, -1)]
    assert d.lost_events == {0: 12, 1: 0}
