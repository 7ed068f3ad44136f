"""Entry/exit pairing: durations, nesting, lost events, orphans, bounds, batches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracewatch.script.pairing import OpenEntry, Pairing, SyscallPairing, pair_arrays


def test_enter_exit_gives_duration_and_data() -> None:
    p = Pairing()
    p.enter(10, 1000, data="read")
    assert len(p) == 1 and 10 in p and p.depth(10) == 1
    assert p.exit(10, 1250) == (250, "read")
    assert len(p) == 0 and 10 not in p
    assert p.counters() == {"completed": 1, "orphans": 0, "dropped": 0, "evicted": 0, "open": 0}


def test_keys_may_be_tuples() -> None:
    p = Pairing()
    p.enter((10, "f"), 100)
    p.enter((10, "g"), 110)
    assert p.exit((10, "f"), 150) == (50, None)
    assert p.exit((10, "g"), 200) == (90, None)


def test_recursion_nests_innermost_first() -> None:
    p = Pairing()
    for ts in (0, 10, 20):
        p.enter(1, ts, data=ts)
    assert p.depth(1) == 3
    assert [e.depth for e in p.open_entries()] == [1, 2, 3]
    assert p.exit(1, 25) == (5, 20)
    assert p.exit(1, 40) == (30, 10)
    assert p.exit(1, 100) == (100, 0)


def test_exit_without_entry_is_an_orphan() -> None:
    p = Pairing()
    assert p.exit(7, 100) is None
    p.enter(7, 200)
    p.exit(7, 300)
    assert p.exit(7, 400) is None
    assert p.orphans == 2 and p.completed == 1


def test_lost_events_drop_open_entries() -> None:
    p = Pairing()
    p.enter(1, 100, cpu=0)
    p.enter(2, 110, cpu=1)
    p.enter(3, 120)  # cpu unknown: dropped by any lost()
    p.enter(4, 130, cpu=1)
    assert p.lost(cpu=1) == 3
    assert [e.key for e in p.open_entries()] == [1]
    assert p.dropped == 3
    assert p.exit(2, 200) is None and p.orphans == 1
    p.enter(5, 140)
    assert p.reset() == 2 and len(p) == 0 and p.dropped == 5


def test_expire_and_forget() -> None:
    p = Pairing()
    p.enter(1, 100)
    p.enter(1, 500)
    p.enter(2, 200)
    p.enter(3, 900)
    assert p.expire(before_ts=300) == 2
    assert [(e.key, e.ts) for e in p.open_entries()] == [(1, 500), (3, 900)]
    assert p.forget(3) == 1 and p.forget(99) == 0
    assert p.dropped == 3 and len(p) == 1


def test_unfinished_entries_with_ages() -> None:
    p = Pairing()
    p.enter(2, 300, data="b", cpu=1)
    p.enter(1, 100, data="a")
    assert p.unfinished(now=1000) == [
        OpenEntry(1, 100, 1, "a", None, 900),
        OpenEntry(2, 300, 1, "b", 1, 700),
    ]
    assert p.open_entries()[0].age is None


def test_bounded_threads_evict_the_oldest() -> None:
    p = Pairing(max_open=2)
    p.enter(1, 100)
    p.enter(1, 101)
    p.enter(2, 200)
    p.enter(3, 300)  # thread 1 (two entries) is evicted
    assert p.evicted == 2 and len(p) == 2
    assert p.exit(1, 400) is None and p.orphans == 1
    assert p.exit(2, 400) == (200, None)


def test_bounded_depth_drops_the_outermost() -> None:
    p = Pairing(max_depth=2)
    for ts in (0, 10, 20):
        p.enter(1, ts)
    assert p.dropped == 1 and p.depth(1) == 2
    assert p.exit(1, 30) == (10, None) and p.exit(1, 30) == (20, None) and p.exit(1, 30) is None


def test_a_weeks_long_run_stays_bounded() -> None:
    p = Pairing(max_open=100)
    for tid in range(10_000):  # threads that never exit
        p.enter(tid, tid)
    assert len(p) == 100 and p.evicted == 9_900


# ---------------------------------------------------------------- arrays


def scalar_pairs(keys: list[int], ts: list[int], enters: list[bool]) -> tuple[list, int, list]:
    p = Pairing(max_open=1 << 30, max_depth=1 << 30)
    pairs = []
    for i, (k, t, e) in enumerate(zip(keys, ts, enters)):
        if e:
            p.enter(k, t, data=i)
        else:
            r = p.exit(k, t)
            if r is not None:
                pairs.append((k, t - r[0], r[0], r[1], i))
    return pairs, p.orphans, sorted(e.data for e in p.open_entries())


events = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.booleans()), max_size=200)


@settings(max_examples=150, deadline=None)
@given(events)
def test_pair_arrays_equals_scalar_pairing(evs: list[tuple[int, int, bool]]) -> None:
    keys = [k for k, _, _ in evs]
    ts = np.cumsum([d for _, d, _ in evs], dtype=np.int64) if evs else np.zeros(0, np.int64)
    enters = [e for _, _, e in evs]
    want, orphans, unfinished = scalar_pairs(keys, ts.tolist(), enters)
    r = pair_arrays(np.array(keys, np.int64), ts, np.array(enters, bool), data=np.arange(len(evs)))
    got = list(zip(r.key.tolist(), r.start_ts.tolist(), r.duration.tolist(), r.enter_index.tolist(),
                   r.exit_index.tolist()))
    assert got == want
    assert r.enter_data is not None and r.enter_data.tolist() == r.enter_index.tolist()
    assert len(r.orphan_index) == orphans
    assert r.unfinished_index.tolist() == unfinished


@settings(max_examples=100, deadline=None)
@given(events, st.lists(st.integers(0, 200), max_size=4))
def test_feed_arrays_in_batches_equals_scalar_pairing(evs: list[tuple[int, int, bool]], cuts: list[int]) -> None:
    keys = np.array([k for k, _, _ in evs], np.int64)
    ts = np.cumsum([d for _, d, _ in evs], dtype=np.int64) if evs else np.zeros(0, np.int64)
    enters = np.array([e for _, _, e in evs], bool)
    want, orphans, unfinished = scalar_pairs(keys.tolist(), ts.tolist(), enters.tolist())
    p = Pairing(max_open=1 << 30, max_depth=1 << 30)
    bounds = sorted({0, len(evs), *[c for c in cuts if c < len(evs)]})
    got = []
    for a, b in zip(bounds, bounds[1:]):
        r = p.feed_arrays(keys[a:b], ts[a:b], enters[a:b], data=np.arange(a, b))
        assert r.enter_data is not None
        got += list(zip(r.key.tolist(), r.start_ts.tolist(), r.duration.tolist(), r.enter_data.tolist(),
                        (r.exit_index + a).tolist()))
    assert got == want
    assert p.orphans == orphans and p.completed == len(want)
    assert sorted(e.data for e in p.open_entries()) == unfinished


def test_feed_arrays_continues_scalar_entries_and_applies_bounds() -> None:
    p = Pairing(max_open=2)
    p.enter(1, 100, data=7)
    r = p.feed_arrays(np.array([2, 1, 3, 4]), np.array([150, 200, 210, 220]), np.array([1, 0, 1, 1], bool),
                      data=np.array([0, 0, 9, 9]))
    assert r.duration.tolist() == [100] and r.enter_index.tolist() == [-1] and r.enter_data.tolist() == [7]
    assert r.unfinished_index.tolist() == [0, 2, 3]
    assert p.evicted == 1 and [e.key for e in p.open_entries()] == [3, 4]
    assert p.exit(4, 300) == (80, 9)


def test_string_keys_in_arrays() -> None:
    r = pair_arrays(np.array([b"a", b"b", b"a"]), np.array([1, 2, 5]), np.array([1, 1, 0], bool))
    assert r.key.tolist() == [b"a"] and r.duration.tolist() == [4]
    assert r.unfinished_index.tolist() == [1]


def test_numba_loop_runs_without_jit() -> None:
    code = textwrap.dedent(
        """
        import numba, numpy as np
        from tracewatch.script.pairing import pair_arrays
        assert numba.config.DISABLE_JIT
        r = pair_arrays(np.array([1, 1, 2, 1, 2, 1]), np.arange(6) * 10,
                        np.array([1, 1, 1, 0, 0, 0], bool))
        print(r.duration.tolist(), r.enter_index.tolist(), r.unfinished_index.tolist())
        """
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[20, 20, 50] [1, 2, 0] []"


# ---------------------------------------------------------------- syscalls


def ev(pid: int, ts: int, id: int, cpu: int = 0) -> SimpleNamespace:  # noqa: A002
    return SimpleNamespace(common_pid=pid, common_ts=ts, id=id, common_cpu=cpu)


def test_syscall_pairing_per_event() -> None:
    sc = SyscallPairing()
    sc.sys_enter(ev(100, 1000, 0))
    sc.sys_enter(ev(200, 1100, 1))
    assert sc.sys_exit(ev(100, 1500, 0)) == (500, 0)
    sc.sys_enter(ev(200, 1200, 3))  # the exit of syscall 1 was lost
    assert sc.dropped == 1
    assert sc.sys_exit(ev(200, 1300, 3)) == (100, 3)
    assert sc.sys_exit(ev(300, 1400, 0)) is None and sc.orphans == 1


def test_syscall_pairing_batches() -> None:
    sc = SyscallPairing()
    r = sc.feed_batches(
        enter_pid=np.array([1, 2, 1]), enter_ts=np.array([10, 20, 40]), enter_id=np.array([0, 1, 2]),
        exit_pid=np.array([1, 3, 1]), exit_ts=np.array([30, 35, 40]),
    )
    # pid 1: enter 10 / exit 30; pid 3 exits without entry; pid 1's exit at 40
    # sorts before its enter at 40 and is an orphan
    assert r.key.tolist() == [1] and r.duration.tolist() == [20] and r.enter_data.tolist() == [0]
    assert r.enter_index.tolist() == [0] and r.exit_index.tolist() == [0]
    assert sorted(r.orphan_index.tolist()) == [1, 2]
    assert r.unfinished_index.tolist() == [1, 2]
    r2 = sc.feed_batches(np.array([], np.int64), np.array([], np.int64), np.array([], np.int64),
                         np.array([2, 1]), np.array([50, 60]))
    assert r2.duration.tolist() == [30, 20] and r2.enter_data.tolist() == [1, 2]
    assert r2.enter_index.tolist() == [-1, -1]
