"""LiveSource against the running kernel: a known workload comes out whole.

The workload is a child Python that writes to /dev/null N times with lengths
BASE, BASE+1, ... BASE+N-1, hopping between CPUs; the lengths number the
writes, so the test can check that every ``raw_syscalls:sys_enter`` of them
is seen exactly once and that time order across CPUs is the order they ran.
"""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from tracewatch.formats.ring_page import walk_pages
from tracewatch.sources.live import LiveSource, mmap_supported
from tracewatch.sources.tracefs import Instance

from .conftest import gather, spawn_python

pytestmark = pytest.mark.live

SYS_WRITE = {"x86_64": 1, "aarch64": 64}.get(os.uname().machine)
BASE = 100_000  # write lengths start here, far from anything else a process writes

WORKLOAD = """
    import json, os, sys, time
    n, chunk, pause = {n}, {chunk}, {pause}
    fd = os.open("/dev/null", os.O_WRONLY)
    buf = memoryview(bytes({base} + n))
    cpus = sorted(os.sched_getaffinity(0))
    print(fd, flush=True)
    sys.stdin.readline()
    stamps = []
    for i in range(n):
        if i % chunk == 0:
            os.sched_setaffinity(0, {{cpus[(i // chunk) % len(cpus)]}})
        t0 = time.monotonic_ns()
        os.write(fd, buf[:{base} + i])
        stamps.append((t0, time.monotonic_ns()))
        if pause:
            time.sleep(pause)
    with open({stamps_path!r}, "w") as f:
        json.dump(stamps, f)
    print("done", flush=True)
"""

MODES = [pytest.param(False, id="read"), pytest.param(True, id="mmap")]


def _need_mmap(use_mmap: bool) -> None:
    if use_mmap:
        with Instance() as inst:
            if not mmap_supported(inst):
                pytest.skip("this kernel cannot mmap trace_pipe_raw (TRACE_MMAP_IOCTL_GET_READER)")


def _writes_of(pages: np.ndarray, page_size: int, sys_enter_id: int, pid: int, fd: int):
    """(ts, write index) of the workload's writes in a batch, plus the page walk."""
    idx = walk_pages(pages, page_size)
    sel = idx.type_id == sys_enter_id
    off = idx.offset[sel]
    ts = idx.ts[sel]
    keep = ((gather(pages, off, 4, "<i4") == pid) & (gather(pages, off, 8, "<i8") == SYS_WRITE)
            & (gather(pages, off, 16, "<u8") == fd))
    lengths = gather(pages, off[keep], 32, "<u8").astype(np.int64)
    return ts[keep], lengths - BASE, idx


def _run_workload(tmp_path, use_mmap: bool, *, n: int, chunk: int, pause: float = 0.0, flush_interval: float = 0.25,
                  buffer_size_kb: int | None = None, read_during: bool = True):
    """Trace the workload's sys_enter events; return what came out and the source's figures."""
    stamps_path = str(tmp_path / "stamps.json")
    child = spawn_python(WORKLOAD.format(n=n, chunk=chunk, pause=pause, base=BASE, stamps_path=stamps_path))
    try:
        fd = int(child.stdout.readline())
        with Instance() as inst:
            if buffer_size_kb:
                inst.buffer_size_kb = buffer_size_kb
            inst.trace_clock = "mono"  # the same clock as time.monotonic_ns() in the child
            inst.enable("raw_syscalls:sys_enter")
            inst.follow_pids([child.pid], children=False)
            sys_enter = inst.event_format("raw_syscalls", "sys_enter")
            rows = []  # (cpu, ts, index, received_at)
            missed = []
            with LiveSource(inst, mmap=use_mmap, flush_interval=flush_interval) as src:
                # the page walk compiles on first use (numba's cache cold): not while the clock runs
                walk_pages(np.zeros((1, src.page_size), np.uint8), src.page_size)
                src.start()
                assert src.mode == ("mmap" if use_mmap else "read")
                child.stdin.write("go\n")
                child.stdin.flush()
                if read_during:
                    def stop_when_done() -> None:
                        child.stdout.readline()  # "done"
                        src.stop()
                    threading.Thread(target=stop_when_done, daemon=True).start()
                else:
                    child.stdout.readline()
                    src.stop()
                for cpu, pages in src.batches(duration=30):
                    received = time.monotonic_ns()
                    ts, index, walk = _writes_of(pages, src.page_size, sys_enter.id, child.pid, fd)
                    assert walk.damage == []
                    missed.extend(int(m) for m in walk.page_missed if m)
                    rows.extend((cpu, int(t), int(i), received) for t, i in zip(ts, index))
                figures = {"lost": src.lost_events(), "stats": src.stats(), "pages": src.pages_read,
                           "missed_pages": missed}
        child.wait(timeout=10)
        with open(stamps_path) as f:
            stamps = json.load(f)
        return rows, stamps, figures
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


@pytest.mark.skipif(SYS_WRITE is None, reason="write(2) syscall number unknown on this architecture")
@pytest.mark.parametrize("use_mmap", MODES)
def test_known_workload_every_event_once_in_time_order(tmp_path, use_mmap):
    _need_mmap(use_mmap)
    n, chunk = 6000, 500
    rows, _stamps, figures = _run_workload(tmp_path, use_mmap, n=n, chunk=chunk)
    indexes = sorted(r[2] for r in rows)
    assert indexes == list(range(n)), f"{len(indexes)} of {n} writes seen"
    cpus = {r[0] for r in rows}
    if len(os.sched_getaffinity(0)) >= 2:
        assert len(cpus) >= 2, "the workload hopped CPUs but events came from one"
    # trace-cmd's order: timestamp, ties to the lower CPU; that is the order they ran
    ordered = [r[2] for r in sorted(rows, key=lambda r: (r[1], r[0]))]
    assert ordered == list(range(n))
    assert figures["lost"] == 0
    assert figures["missed_pages"] == []
    assert figures["pages"] > 0
    for cpu, s in figures["stats"].items():
        assert s["overrun"] == 0 and s["dropped_events"] == 0, (cpu, s)


@pytest.mark.skipif(SYS_WRITE is None, reason="write(2) syscall number unknown on this architecture")
@pytest.mark.parametrize("use_mmap", MODES)
def test_sparse_events_come_out_promptly_with_exact_times(tmp_path, use_mmap):
    """Events far below buffer_percent still arrive within a flush interval, and
    pieces of a page read while the kernel is still writing it keep exact times."""
    _need_mmap(use_mmap)
    n = 6
    rows, stamps, _figures = _run_workload(tmp_path, use_mmap, n=n, chunk=2, pause=0.12, flush_interval=0.03)
    assert sorted(r[2] for r in rows) == list(range(n))
    for cpu, ts, i, received in rows:
        before, after = stamps[i]
        assert before <= ts <= after, f"write {i} on CPU {cpu}: ts {ts} outside [{before}, {after}]"
        assert received - ts < 0.5e9, f"write {i} arrived {(received - ts) / 1e9:.3f}s late"


@pytest.mark.skipif(SYS_WRITE is None, reason="write(2) syscall number unknown on this architecture")
@pytest.mark.parametrize("use_mmap", MODES)
def test_overrun_is_reported_in_pages_and_stats(tmp_path, use_mmap):
    """A buffer too small for the burst, read only afterwards: the loss shows in
    the page flags (walk_pages' page_missed) and in the per-CPU stats."""
    _need_mmap(use_mmap)
    n = 20000
    rows, _stamps, figures = _run_workload(tmp_path, use_mmap, n=n, chunk=n, buffer_size_kb=16, read_during=False)
    seen = len(rows)
    assert 0 < seen < n
    assert figures["lost"] > 0
    assert figures["missed_pages"], "no page carried the missed-events flag"
    # what was kept is the newest part of the burst, in order
    indexes = sorted(r[2] for r in rows)
    assert indexes == list(range(indexes[0], indexes[0] + seen)) or indexes[-1] == n - 1


def test_pages_one_at_a_time_and_close_releases_instance():
    with Instance() as inst:
        inst.enable("sched:sched_switch")
        src = LiveSource(inst)
        got = []
        for cpu, page in src.pages(duration=0.3):
            assert len(page) == src.page_size
            got.append(cpu)
        assert got, "no sched_switch page in 0.3 s"
        assert inst.tracing_on is False  # batches() stopped tracing before draining
        src.close()
        src.close()
    # close of the instance also works while a source is still open
    with Instance() as inst:
        inst.enable("sched:sched_switch")
        src = LiveSource(inst)
        src.start()
    assert src._closed
