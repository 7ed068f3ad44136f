"""Flight-recorder dumps: what goes in the file (whole pages before, nothing after the post window),
and the policy around it (names, sidecar, rotation, cooldown, free space, the script's dump()).

Dumps are checked three ways: event by event against the pages they came from, with ``tracewatch
report``, and with ``trace-cmd report`` (skipped when trace-cmd is absent), whose lines must be the
reference report's lines for the same events.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tracewatch.recorder as recorder_api
from tests.conftest import FIXTURES, raw_pages_meta
from tracewatch.formats.ring_page import walk_pages
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.recorder import FlightRecorder, Window, dump, replay_pages, set_current_recorder
from tracewatch.recorder.dump import cut_pages_after, dump_file_stem, slugify
from tracewatch.recorder.page_ring import page_times
from tracewatch.sources.file import open_trace
from tracewatch.testing import PageBuilder, make_payload
from tracewatch.tools import report


PAGE = 4096
RAW_PAGES = FIXTURES / "raw-pages"
TRACE_CMD = shutil.which("trace-cmd")
needs_fixtures = pytest.mark.skipif(not RAW_PAGES.is_dir(), reason="shared fixtures not present")


# -- helpers -------------------------------------------------------------------------------------


def raw_cpu_pages() -> dict[int, np.ndarray]:
    return {cpu: np.fromfile(RAW_PAGES / f"cpu{cpu}.raw", np.uint8) for cpu in (0, 1)}


def events_by_cpu(pages: dict[int, np.ndarray]) -> dict[int, list[tuple[int, bytes]]]:
    """(ts, record bytes) per CPU, in stream order."""
    out = {}
    for cpu, data in pages.items():
        idx = walk_pages(data, PAGE)
        out[cpu] = [(int(t), data[o : o + n].tobytes()) for t, o, n in zip(idx.ts, idx.offset, idx.length)]
    return out


def dump_events(path: str) -> dict[int, list[tuple[int, bytes]]]:
    with TraceDatReader(path) as r:
        out = {}
        for cpu in range(r.cpus):
            data, _ = r.cpu_buffer(cpu)
            idx = r.cpu_index(cpu)
            assert not idx.damage, idx.damage
            out[cpu] = [(int(t), data[o : o + n].tobytes()) for t, o, n in zip(idx.ts, idx.offset, idx.length)]
        return out


def live_order(pages: dict[int, np.ndarray]) -> list[tuple[int, int, np.ndarray]]:
    """Every page as (time it is complete, cpu, page), in the order a live reader would hand them out."""
    feed = []
    for cpu, data in pages.items():
        idx = walk_pages(data, PAGE)
        _, last, _ = page_times(idx)
        for p in range(len(data) // PAGE):
            feed.append((int(last[p]), cpu, data[p * PAGE : (p + 1) * PAGE]))
    feed.sort(key=lambda x: (x[0], x[1]))
    return feed


def trace_cmd_lines(path: str) -> list[str]:
    done = subprocess.run([TRACE_CMD, "report", path], capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode("utf-8", "surrogateescape").splitlines()


def tracewatch_lines(path: str, capsys) -> list[str]:
    capsys.readouterr()
    assert report.main([path]) == 0
    return capsys.readouterr().out.splitlines()


def is_subsequence(lines: list[str], reference: list[str]) -> bool:
    it = iter(reference)
    return all(any(line == ref for ref in it) for line in lines)


def recorder(tmp_path: Path, keep="32K", **kw) -> FlightRecorder:
    kw.setdefault("min_free_bytes", 0)
    return FlightRecorder(keep, tmp_path, raw_pages_meta(), cpus=2, log=kw.pop("log", lambda m: None), **kw)


# -- names -------------------------------------------------------------------------------------


def test_names_are_time_then_slug():
    assert slugify("nginx: 5 failing stats!") == "nginx-5-failing-stats"
    assert slugify("???") == "dump"
    assert dump_file_stem(1796022902.1234, "Disk latency > 50ms") == "20261130T071502.123Z-disk-latency-50ms"


# -- what a dump holds -------------------------------------------------------------------------


@needs_fixtures
def test_dump_holds_keep_bytes_before_and_nothing_after_the_post_window(tmp_path, capsys):
    pages = raw_cpu_pages()
    original = events_by_cpu(pages)
    merged = sorted((ts, cpu) for cpu, evs in original.items() for ts, _ in evs)
    trigger_ts = merged[int(len(merged) * 0.6)][0]
    after_ns = 300_000
    end = trigger_ts + after_ns
    # the end of the window falls inside a page on some CPU: that page must be cut, not dropped or kept whole
    straddling = [cpu for cpu, data in pages.items()
                  for f, l_ in zip(*page_times(walk_pages(data, PAGE))[:2]) if f <= end < l_]
    assert straddling

    rec = recorder(tmp_path, keep="32K", after="300us")
    pending = None
    for _t, cpu, page in live_order(pages):
        rec.add_pages(cpu, page)
        if pending is None and rec.ring.newest_ts >= trigger_ts:
            assert rec.ring.bytes == 32 << 10  # the ring is full when the trigger comes
            pending = rec.trigger("test: mid-stream", trigger_ts)
            assert pending is not None
    results = rec.close() + rec.results
    assert len({r.path for r in results}) == 1
    res = results[0]

    got = dump_events(res.path)
    pre_bytes = 0
    with TraceDatReader(res.path) as r:
        for cpu in range(2):
            first, _, _ = page_times(r.cpu_index(cpu))
            pre_bytes += int(np.count_nonzero(first <= trigger_ts)) * PAGE
    assert pre_bytes >= 32 << 10
    for cpu in (0, 1):
        evs = original[cpu]
        n_in_window = sum(1 for ts, _ in evs if ts <= end)
        start = n_in_window - len(got[cpu])
        assert start >= 0
        # a contiguous run of the CPU's events, ending with the last one inside the window
        assert got[cpu] == evs[start:n_in_window]
        assert all(ts <= end for ts, _ in got[cpu])
    assert res.events == sum(len(v) for v in got.values())
    assert max(ts for v in got.values() for ts, _ in v) <= end < max(ts for v in original.values() for ts, _ in v)

    side = json.loads(Path(res.sidecar).read_text())
    assert side["reason"] == "test: mid-stream" and side["trigger"]["ts_ns"] == trigger_ts
    assert side["events"] == res.events and side["bytes"] == os.path.getsize(res.path)
    assert side["window"]["after_ns"] == after_ns and side["settings"]["keep_bytes"] == 32 << 10
    assert side["events_lost"] == 0 and side["tracewatch_version"]

    ours = tracewatch_lines(res.path, capsys)
    reference = (RAW_PAGES / "pages.v7.dat.report.txt").read_text("utf-8", "surrogateescape").splitlines()
    assert ours[0] == "cpus=2" and len(ours) - 1 == res.events
    assert is_subsequence(ours[1:], reference[1:])
    if TRACE_CMD:
        assert trace_cmd_lines(res.path) == ours


@needs_fixtures
def test_before_limits_the_span_kept_before_the_trigger(tmp_path):
    pages = raw_cpu_pages()
    rec = recorder(tmp_path, keep="128K")
    for _t, cpu, page in live_order(pages):
        rec.add_pages(cpu, page)
    newest = rec.ring.newest_ts
    res = rec.trigger("short", newest, before="1ms")
    rec.close()
    got = dump_events(res.path)
    # whole pages: each CPU starts at most one page before trigger - 1ms, and covers it
    with TraceDatReader(res.path) as r:
        for cpu in range(2):
            _, last, _ = page_times(r.cpu_index(cpu))
            if len(last):
                assert last[0] >= newest - 1_000_000
                assert len(last) == 1 or last[0] < newest  # not everything is after the start
    total = sum(len(v) for v in events_by_cpu(pages).values())
    assert 0 < sum(len(v) for v in got.values()) < total


def test_cut_page_keeps_the_stored_lost_count_and_stays_valid():
    b = PageBuilder(PAGE)
    b.begin_page(1_000, missed=42)
    for i in range(10):
        b.event(make_payload(5, 16, fill=i), delta=100)
    b.time_extend(1 << 30)
    b.event(make_payload(5, 16), delta=1)
    data = np.frombuffer(b.build(), np.uint8)
    cut, kept = cut_pages_after(data, 1_000 + 5 * 100, PAGE)
    assert kept == 5
    idx = walk_pages(cut, PAGE)
    assert not idx.damage
    assert [int(t) for t in idx.ts] == [1_000 + 100 * (i + 1) for i in range(5)]
    assert int(idx.page_missed[0]) == 42
    assert int(idx.page_commit[0]) == 5 * 20
    # the original is untouched, and a window past every event keeps the page whole
    assert len(walk_pages(data, PAGE)) == 11
    whole, kept = cut_pages_after(data, 1 << 40, PAGE)
    assert kept == 11 and whole.tobytes() == data.tobytes()
    nothing, kept = cut_pages_after(data, 999, PAGE)
    assert kept == 0 and len(nothing) == 0


def test_post_window_is_collected_from_pages_read_after_the_trigger(tmp_path):
    b0 = PageBuilder(PAGE)
    b1 = PageBuilder(PAGE)
    for i in range(4000):
        b0.add(1_000_000 + i * 1_000, make_payload(5, 24, fill=i))
        if i % 4 == 0:
            b1.add(1_000_500 + i * 1_000, make_payload(6, 24, fill=i))
    pages = {0: np.frombuffer(b0.build(), np.uint8), 1: np.frombuffer(b1.build(), np.uint8)}
    rec = recorder(tmp_path, keep="16K", after="500us", settle="10ms")
    trigger_ts = 2_000_000
    done = []
    for _t, cpu, page in live_order(pages):
        done += rec.add_pages(cpu, page)
        if not rec.pending and not done and rec.ring.newest_ts >= trigger_ts:
            rec.trigger("window", trigger_ts)
    # completed by trace time alone, long before the end of the input
    assert len(done) == 1 and rec.results == done
    got = dump_events(done[0].path)
    last = max(ts for v in got.values() for ts, _ in v)
    assert last == 2_500_000  # an event falls exactly on the end: it is inside the window
    orig = events_by_cpu(pages)
    for cpu in (0, 1):
        n = sum(1 for ts, _ in orig[cpu] if ts <= 2_500_000)
        assert got[cpu] == orig[cpu][n - len(got[cpu]) : n]


@needs_fixtures
def test_dump_now_is_written_at_once(tmp_path):
    rec = recorder(tmp_path, keep="16K")
    for cpu, data in raw_cpu_pages().items():
        rec.add_pages(cpu, data)
    p = rec.dump_now("SIGUSR1")
    assert p.result is not None and os.path.exists(p.result.path) and not rec.pending
    assert p.result.events > 0


# -- policy --------------------------------------------------------------------------------------


def feed_synthetic(rec: FlightRecorder, start: int, stop: int, step: int = 10_000) -> None:
    b = PageBuilder(PAGE)
    for t in range(start, stop, step):
        b.add(t, make_payload(5, 24))
    rec.add_pages(0, np.frombuffer(b.build(), np.uint8))


def test_rotation_keeps_the_newest_dumps(tmp_path):
    rec = recorder(tmp_path, keep="16K", max_dumps=2)
    (tmp_path / "notes.txt").write_text("not a dump: never deleted")
    made = []
    for i in range(4):
        feed_synthetic(rec, 10_000_000 * i + 1, 10_000_000 * (i + 1))
        p = rec.trigger(f"round {i}", wall_time_hint(i))
        made.append(p.path)
        rec.close()
    left = sorted(os.listdir(tmp_path))
    assert "notes.txt" in left
    assert sorted(n for n in left if n.endswith(".dat")) == sorted(os.path.basename(p) for p in made[2:])
    assert len([n for n in left if n.endswith(".json")]) == 2
    assert rec.writer.rotated == 2


def wall_time_hint(i: int) -> int:
    return 10_000_000 * (i + 1) - 1


def test_cooldown_counts_triggers_instead_of_dumping(tmp_path):
    rec = recorder(tmp_path, keep="16K", cooldown="1ms")
    feed_synthetic(rec, 1, 5_000_000)
    outcomes = [rec.trigger("storm", ts) is not None for ts in (1_000_000, 1_500_000, 1_900_000, 2_100_000)]
    rec.close()
    assert outcomes == [True, False, False, True]
    assert rec.writer.suppressed_cooldown == 2 and rec.writer.dumps_written == 2
    sides = sorted(tmp_path.glob("*.json"))
    counts = sorted(json.loads(p.read_text())["triggers_suppressed_before"] for p in sides)
    assert counts == [0, 2]


def test_disk_nearly_full_stops_dumping_with_one_log_line(tmp_path):
    lines: list[str] = []
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    rec = recorder(tmp_path, keep="16K", min_free_bytes=free + (1 << 30), log=lines.append)
    feed_synthetic(rec, 1, 5_000_000)
    assert [rec.trigger("full", ts) for ts in (1_000_000, 2_000_000, 3_000_000)] == [None, None, None]
    rec.close()
    assert [p.name for p in tmp_path.iterdir()] == [".tracewatch.lock"]  # no dump, no temporary
    assert rec.writer.skipped_disk_full == 3
    assert len(lines) == 1 and "dumping stopped" in lines[0] and str(tmp_path) in lines[0]
    # space comes back: dumping resumes, and says so once
    rec.writer.min_free_bytes = 0
    assert rec.trigger("room again", 4_000_000) is not None
    rec.close()
    assert len(lines) == 3 and "dumping resumed" in lines[1] and lines[2].startswith("dump ")


# -- the script's dump() -------------------------------------------------------------------------


def test_dump_without_a_recorder_notes_once_and_counts(capsys):
    previous = set_current_recorder(None)
    before = recorder_api.unserved_count
    try:
        assert dump(reason="no recorder", ts=5) is None
        assert dump(reason="again", ts=6) is None
    finally:
        set_current_recorder(previous)
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "no recorder" in err
    assert recorder_api.unserved_count == before + 2
    assert recorder_api.unserved_requests[-1].reason == "again"


def test_dump_reaches_the_current_recorder(tmp_path):
    rec = recorder(tmp_path, keep="16K")
    feed_synthetic(rec, 1, 5_000_000)
    previous = set_current_recorder(rec)
    try:
        rec.note_time(3_000_000)
        p = dump(reason="from a handler", after="1ms")
    finally:
        set_current_recorder(previous)
    assert p is not None and p.request.trigger_ts == 3_000_000 and p.end_ts == 4_000_000
    (res,) = rec.close() or rec.results
    assert max(ts for v in dump_events(res.path).values() for ts, _ in v) <= 4_000_000


# -- a trigger that depends on history, on a real trace -------------------------------------------


@pytest.mark.skipif(not (FIXTURES / "a_syscalls.v6.dat").exists(), reason="shared fixtures not present")
def test_five_failing_newfstatat_within_10ms_fire_once_per_burst(tmp_path):
    path = str(FIXTURES / "a_syscalls.v6.dat")
    NEWFSTATAT = 262
    fails = Window("10ms")
    fired = []
    with open_trace(path) as t, TraceDatReader(path) as reader:
        rec = FlightRecorder.for_reader(reader, "64K", tmp_path, after="1ms", min_free_bytes=0, log=lambda m: None)
        progress: dict[int, int] = {}
        failing: dict[int, list[int]] = {}
        for ev in t.events("raw_syscalls:sys_exit"):
            replay_pages(reader, rec, ev.common_ts, progress)  # the ring sees pages before handlers see events
            if ev.id == NEWFSTATAT and ev.ret < 0:
                failing.setdefault(ev.common_pid, []).append(ev.common_ts)
                if fails.reached(ev.common_pid, ev.common_ts, 5):
                    p = rec.trigger(f"{ev.common_pid} failing newfstatat", event=ev)
                    fired.append((ev.common_pid, ev.common_ts, p))
        replay_pages(reader, rec, 1 << 62, progress)
        rec.close()

    # independent count: bursts (failures of one pid closer than 10 ms) that hold 5 failures within 10 ms
    expected = 0
    for ts in failing.values():
        bursts, cur = [], [ts[0]]
        for a, b in zip(ts, ts[1:]):
            if b - a >= 10_000_000:
                bursts.append(cur)
                cur = []
            cur.append(b)
        bursts.append(cur)
        expected += sum(1 for bu in bursts if any(bu[i + 4] - bu[i] < 10_000_000 for i in range(len(bu) - 4)))
    assert expected >= 1 and len(fired) == expected, (expected, len(fired))

    for pid, ts, p in fired:
        res = p.result
        assert res is not None
        with open_trace(res.path) as d:
            evs = list(d.events())
            exits = [e for e in d.events("raw_syscalls:sys_exit")]
        assert max(e.common_ts for e in evs) <= ts + 1_000_000  # nothing after the post window
        mine = [e.common_ts for e in exits if e.common_pid == pid and e.id == NEWFSTATAT and e.ret < 0
                and ts - 10_000_000 < e.common_ts <= ts]
        assert len(mine) >= 5  # the five failing calls are in the dump
        with TraceDatReader(res.path) as r:
            pre = sum(int(np.count_nonzero(page_times(r.cpu_index(c))[0] <= ts)) for c in range(r.cpus)) * PAGE
        assert pre >= 64 << 10 or res.first_ts == min(e.common_ts for e in evs)  # keep bytes, or the whole trace
        side = json.loads(Path(res.sidecar).read_text())
        assert "sys_exit" in side["trigger"]["event"] and side["trigger"]["ts_ns"] == ts
        if TRACE_CMD:
            lines = trace_cmd_lines(res.path)
            assert len(lines) - 1 == res.events
            assert sum(1 for ln in lines if "NR 262 = -2" in ln) >= 5
