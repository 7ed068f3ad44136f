"""The Dispatcher on its own, over events a test writes (MemorySource): order across types
and CPUs, batch and per-event handlers, where= filters, timers on trace time, the error
policy, lost events, the trace time handlers see.  No fixture file, no kernel."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from tracewatch.errors import FilterError, HandlerError
from tracewatch.script.api import EventHandler, Timer
from tracewatch.stream.dispatch import Dispatcher, current_trace_time
from tracewatch.testing import MemorySource, event_format, record

A = event_format("demo:alpha", 300, "int value; unsigned long addr;")
B = event_format("demo:beta", 301, "int value; u64 n;")
C = event_format("other:gamma", 302, "int value;")


def _source(events, *, chunk_events: int = 262_144, lost=None) -> MemorySource:
    """A source of ``events``: (cpu, ts, fmt, value), each CPU's in time order; ``lost``:
    {(cpu, ts): count} marks a loss before that event."""
    src = MemorySource([A, B, C], chunk_events=chunk_events)
    for cpu, ts, fmt, value in events:
        if lost and (cpu, ts) in lost:
            src.lose(cpu, lost[(cpu, ts)])
        src.add(cpu, ts, record(fmt, value=value))
    return src


def _mixed_events(n: int = 300, seed: int = 7) -> list[tuple[int, int, object, int]]:
    """``n`` events of three types on four CPUs, distinct times, value = the event's number
    in time order."""
    rng = random.Random(seed)
    times = sorted(rng.sample(range(1_000, 1_000_000), n))
    out = [(rng.randrange(4), ts, rng.choice((A, B, C)), i) for i, ts in enumerate(times)]
    return sorted(out, key=lambda e: (e[0], e[1]))  # written CPU by CPU, as the kernel's buffers hold them


def _run(src: MemorySource, handlers, timers=(), lost=(), **kw) -> Dispatcher:
    d = Dispatcher(handlers, timers, lost, **kw)
    d.prepare(src.formats.values())
    for chunk in src.chunks():
        d.feed(chunk)
    return d


def _on(pattern, func, where=None):
    return EventHandler(pattern, func, where, batch=False)


def _on_batch(pattern, func, where=None):
    return EventHandler(pattern, func, where, batch=True)


@pytest.mark.parametrize("chunk_events", [1, 7, 1000])
def test_per_event_handlers_see_every_type_and_cpu_in_time_order(chunk_events):
    events = _mixed_events()
    seen = []
    _run(_source(events, chunk_events=chunk_events), [_on("*", lambda ev: seen.append(ev))])
    by_time = sorted(events, key=lambda e: e[1])
    assert [(ev.common_ts, ev.common_cpu, ev.common_type, ev.value) for ev in seen] == \
        [(ts, cpu, fmt.id, v) for cpu, ts, fmt, v in by_time]


def test_handlers_of_different_types_are_called_in_time_order_between_them():
    events = _mixed_events()
    calls = []
    handlers = [_on("demo:alpha", lambda ev: calls.append(("alpha", ev.value))),
                _on("demo:beta", lambda ev: calls.append(("beta", ev.value))),
                _on("other:*", lambda ev: calls.append(("other", ev.value)))]
    d = _run(_source(events, chunk_events=50), handlers)
    name = {A.id: "alpha", B.id: "beta", C.id: "other"}
    assert calls == [(name[fmt.id], v) for _cpu, _ts, fmt, v in sorted(events, key=lambda e: e[1])]
    assert d.events_seen == d.events_dispatched == len(events)


def test_two_handlers_of_one_event_run_in_registration_order():
    calls = []
    events = [(0, 1_000 + i, A, i) for i in range(5)]
    _run(_source(events), [_on("demo:alpha", lambda ev: calls.append(("first", ev.value))),
                           _on("*:alpha", lambda ev: calls.append(("second", ev.value)))])
    assert calls == [(who, i) for i in range(5) for who in ("first", "second")]


def test_batch_handlers_get_their_type_in_columns():
    events = _mixed_events()
    batches = []
    _run(_source(events, chunk_events=64), [_on_batch("demo:beta", batches.append)])
    assert all(b.format_.id == B.id for b in batches)
    values = np.concatenate([b.value for b in batches]).tolist()
    ts = np.concatenate([b.common_ts for b in batches]).tolist()
    want = sorted((ts_, v) for _c, ts_, fmt, v in events if fmt is B)
    assert list(zip(ts, values)) == want


def test_where_filters_per_event_and_batch_handlers():
    events = _mixed_events()
    per_event, batched = [], []
    d = _run(_source(events), [_on("demo:*", lambda ev: per_event.append(ev.value), where="value < 50 || value > 250"),
                               _on_batch("demo:alpha", lambda b: batched.extend(b.value.tolist()),
                                         where="value >= 100 && common_cpu != 2")])
    in_time = sorted(events, key=lambda e: e[1])
    assert per_event == [v for _c, _t, fmt, v in in_time if fmt is not C and (v < 50 or v > 250)]
    assert batched == [v for c, _t, fmt, v in in_time if fmt is A and v >= 100 and c != 2]
    assert d.events_dispatched == len(per_event) + len(batched)


def test_events_nobody_wants_are_seen_not_dispatched():
    events = _mixed_events(60)
    d = _run(_source(events), [_on("other:gamma", lambda ev: None)])
    assert d.events_seen == 60
    assert d.events_dispatched == sum(1 for e in events if e[2] is C)
    assert d.wants(C) and not d.wants(A)


def test_a_bad_filter_fails_before_the_first_event():
    calls = []
    d = Dispatcher([_on("demo:alpha", calls.append, where="value = 3")])
    with pytest.raises(FilterError):
        d.prepare([A, B])
    assert calls == []


@pytest.mark.parametrize("chunk_events", [1, 3, 1000])
def test_timers_fire_on_trace_time_between_the_events(chunk_events):
    # events every 250 ns from 1000; a timer every 1000 ns: deadlines 2000, 3000, ...
    events = [(i % 2, 1_000 + 250 * i, A, i) for i in range(17)]  # last event at 5000
    log = []
    timer = Timer(1_000, lambda: log.append(("timer", current_trace_time())))
    _run(_source(sorted(events), chunk_events=chunk_events),
         [_on("demo:alpha", lambda ev: log.append(("event", ev.common_ts)))], [timer])
    want = []
    deadline = 1_000 + 1_000  # the first event's time plus the interval
    for _cpu, ts, _fmt, _v in sorted(events, key=lambda e: e[1]):
        while deadline <= ts:  # a timer fires before the first event at or after its deadline
            want.append(("timer", deadline))
            deadline += 1_000
        want.append(("event", ts))
    assert log == want
    assert log[-1] == ("event", 5_000)  # no event reached the 6000 deadline: no firing for it


def test_a_gap_in_the_trace_fires_each_missed_period():
    events = [(0, 1_000, A, 0), (0, 1_500, A, 1), (0, 5_600, A, 2)]
    fired = []
    _run(_source(events), [_on("*", lambda ev: None)], [Timer(1_000, lambda: fired.append(current_trace_time()))])
    assert fired == [2_000, 3_000, 4_000, 5_000]


def test_stop_policy_ends_the_run_at_the_first_error():
    events = [(0, 1_000 + i, A, i) for i in range(10)]
    seen = []

    def handler(ev):
        seen.append(ev.value)
        if ev.value == 3:
            raise ZeroDivisionError("three")

    err = io.StringIO()
    d = Dispatcher([_on("demo:alpha", handler)], on_error="stop", err=err)
    d.prepare([A, B, C])
    with pytest.raises(HandlerError) as e:
        for chunk in _source(events).chunks():
            d.feed(chunk)
    assert seen == [0, 1, 2, 3]
    assert "ZeroDivisionError: three" in str(e.value) and "test_dispatcher.py:" in str(e.value)
    report = err.getvalue()
    assert "handler test_stop_policy_ends_the_run_at_the_first_error.<locals>.handler raised ZeroDivisionError" \
        in report
    assert "value=3" in report  # the event being handled
    assert d.errors == 1


@pytest.mark.parametrize("batch", [False, True])
def test_skip_policy_goes_on_and_counts(batch):
    events = [(0, 1_000 + i, A, i) for i in range(30)]
    seen = []

    def per_event(ev):
        if ev.value % 2:
            raise ValueError(f"odd {ev.value}")
        seen.append(ev.value)

    def per_batch(b):
        seen.extend(b.value.tolist())
        raise ValueError("batch")

    err = io.StringIO()
    handler = _on_batch("demo:alpha", per_batch) if batch else _on("demo:alpha", per_event)
    d = _run(_source(events, chunk_events=5), [handler], on_error="skip", err=err, max_error_reports=2)
    if batch:
        assert seen == list(range(30)) and d.errors == 6  # one per chunk of 5
    else:
        assert seen == list(range(0, 30, 2)) and d.errors == 15
    report = err.getvalue()
    assert report.count(" raised ValueError") == 2
    assert report.count("further handler errors are counted, not shown") == 1


def test_errors_in_interleaved_handlers_skip_one_event_each():
    # two handlers alternating at every event (the zipped path): a failure skips only that call
    events = [(0, 1_000 + 2 * i, A, i) for i in range(20)] + [(1, 1_001 + 2 * i, B, i) for i in range(20)]
    calls = []

    def alpha(ev):
        if ev.value == 5:
            raise KeyError("five")
        calls.append(("a", ev.value))

    d = _run(_source(events), [_on("demo:alpha", alpha), _on("demo:beta", lambda ev: calls.append(("b", ev.value)))],
             on_error="skip", err=io.StringIO())
    want = [x for i in range(20) for x in (("a", i), ("b", i)) if x != ("a", 5)]
    assert calls == want and d.errors == 1


def test_lost_events_reach_on_lost_and_the_counts():
    events = [(0, 1_000, A, 0), (1, 1_100, A, 1), (0, 2_000, B, 2), (1, 2_100, B, 3), (1, 3_000, C, 4)]
    lost_calls = []
    order = []
    d = _run(_source(events, lost={(0, 2_000): 7, (1, 3_000): -1}),
             [_on("*", lambda ev: order.append(("event", ev.value)))],
             lost=[lambda cpu, count: lost_calls.append((cpu, count))])
    assert lost_calls == [(0, 7), (1, -1)]
    assert d.lost_events == {0: 7, 1: 0}  # an unknown number counts as none
    assert [v for _k, v in order] == [0, 1, 2, 3, 4]


def test_lost_handler_errors_follow_the_policy():
    def boom(cpu, count):
        raise RuntimeError("lost handler")

    with pytest.raises(HandlerError):
        _run(_source([(0, 1_000, A, 0), (0, 2_000, A, 1)], lost={(0, 2_000): 3}), [], lost=[boom],
             err=io.StringIO())


def test_current_trace_time_is_what_the_handler_handles():
    events = [(0, 1_000 + 10 * i, A, i) for i in range(8)] + [(1, 1_005 + 10 * i, B, i) for i in range(8)]
    per_event, per_batch = [], []
    _run(_source(events),
         [_on("demo:alpha", lambda ev: per_event.append((ev.common_ts, current_trace_time()))),
          _on_batch("demo:beta", lambda b: per_batch.append((int(b.common_ts[-1]), current_trace_time())))])
    assert per_event and all(now == ts for ts, now in per_event)
    assert per_batch and all(now == last for last, now in per_batch)
    assert current_trace_time() is None  # outside dispatch


def test_whole_batches_for_batch_only_handlers():
    events = _mixed_events()
    src = _source(events)
    got = []
    d = Dispatcher([_on_batch("demo:*", lambda b: got.append((b.format_.id, b.value.tolist())), where="value < 150")])
    assert d.batch_only()
    d.feed_batches(src.split(only=d.wants))
    want = {}
    for _c, _t, fmt, v in sorted(events, key=lambda e: e[1]):
        if fmt is not C and v < 150:
            want.setdefault(fmt.id, []).append(v)
    assert dict(got) == want
    assert d.events_seen == sum(1 for e in events if e[2] is not C)
    # a timer, a lost handler or a per-event handler needs the events in order: no whole batches
    assert not Dispatcher([_on_batch("*", print)], [Timer(10, print)]).batch_only()
    assert not Dispatcher([_on_batch("*", print)], lost=[print]).batch_only()
    assert not Dispatcher([_on("*", print)]).batch_only()


def test_on_error_must_be_stop_or_skip():
    with pytest.raises(ValueError):
        Dispatcher([], on_error="ignore")
