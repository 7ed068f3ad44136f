"""History helpers for triggers: sliding windows, sequences, slow calls; all bounded in memory."""

from __future__ import annotations

import pytest

from tracewatch.recorder.history import EventSequence, Sequence, SequenceMatch, SlowCall, Threshold, Window

MS = 1_000_000


def test_window_counts_events_in_the_span_per_key():
    w = Window("10ms")
    assert [w.add("a", t * MS) for t in (0, 2, 4, 6, 8)] == [1, 2, 3, 4, 5]
    assert w.add("b", 9 * MS) == 1
    assert w.add("a", 12 * MS) == 4  # 0 and 2 fell out of (2, 12]
    assert w.count("a") == 4 and w.count("a", now=30 * MS) == 0
    assert w.rate("a") == pytest.approx(400.0)  # 4 events per 10 ms


def test_window_reached_fires_once_per_burst():
    w = Window("10ms")
    fired = [t for t in (0, 1, 2, 3, 4, 5, 6, 7) if w.reached(42, t * MS, 5)]
    assert fired == [4]
    # the burst goes on without a quiet span: no second firing
    assert not any(w.reached(42, t * MS, 5) for t in range(8, 40))
    # quiet for more than the span, then a new burst fires again
    assert [t for t in range(60, 70) if w.reached(42, t * MS, 5)] == [64]
    # five spread over more than 10 ms never fire
    assert not any(w.reached(7, t * 3 * MS, 5) for t in range(10))


def test_window_is_bounded():
    w = Window("1s", max_keys=100, max_per_key=8)
    for k in range(1000):
        w.add(k, k)
    assert len(w) == 100 and w.evicted == 900 and 999 in w and 0 not in w
    for t in range(20):
        assert w.add("hot", t) == min(t + 1, 8)
    assert w.saturated == 12


def test_sequence_a_then_b_on_the_same_thread_within_a_time():
    s = EventSequence("A", "B", within="10ms")
    assert s.feed("B", 1, 0) is None  # B without A
    assert s.feed("A", 1, 1 * MS) is None
    assert s.feed("A", 2, 2 * MS) is None
    assert s.feed("B", 2, 20 * MS) is None  # thread 2: too late
    assert s.feed("B", 1, 5 * MS) == SequenceMatch(1, 1 * MS, 5 * MS, 4 * MS)
    assert s.feed("B", 1, 6 * MS) is None  # the sequence was consumed
    assert s.matches == 1 and s.expired == 1


def test_sequence_restarts_on_the_first_step_and_ignores_others():
    s = EventSequence("open", "read", "close", within="10ms")
    s.feed("open", "t", 0)
    s.feed("open", "t", 20 * MS)  # restart: the first open is forgotten
    s.feed("write", "t", 21 * MS)  # not a step: ignored
    s.feed("read", "t", 22 * MS)
    assert s.in_progress("t") == 2
    assert s.feed("close", "t", 29 * MS) == SequenceMatch("t", 20 * MS, 29 * MS, 9 * MS)
    with pytest.raises(ValueError):
        EventSequence("only", within="1ms")


def test_sequence_is_bounded():
    s = EventSequence("A", "B", within="1s", max_keys=10)
    for k in range(100):
        s.feed("A", k, k)
    assert len(s) == 10 and s.evicted == 90
    assert s.feed("B", 99, 200) is not None and s.feed("B", 0, 200) is None


def test_threshold_reports_calls_slower_than_the_limit():
    slow = Threshold(over="50ms")
    slow.enter(10, 0, data="fd 3")
    slow.enter(11, 0, data="fd 4")
    assert slow.exit(10, 30 * MS) is None
    assert slow.exit(11, 70 * MS) == SlowCall(11, 0, 70 * MS, "fd 4")
    assert slow.exit(12, 80 * MS) is None  # no entry: an orphan, counted by the pairing
    assert slow.slow == 1 and slow.pairing.orphans == 1 and len(slow) == 0


def test_threshold_is_bounded_and_drops_on_loss():
    slow = Threshold(over="1ms", max_open=5)
    for k in range(20):
        slow.enter(k, k)
    assert len(slow) == 5 and slow.pairing.evicted == 15
    assert slow.lost() == 5 and len(slow) == 0


def test_sequence_is_the_first_release_name_of_event_sequence():
    import tracewatch

    assert tracewatch.Sequence is tracewatch.EventSequence is EventSequence is Sequence
