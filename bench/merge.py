"""Merge speed: the two k-way merge kernels (trace-cmd's order) on big synthetic input.

    python bench/merge.py [EVENTS] [CPUS] [TRACE.DAT]

Per-CPU streams of sorted timestamps, in two shapes: "interleaved" (CPUs' events
alternate, runs of about one event: the heap works on every event) and "bursty"
(runs of about 200 events); with TRACE.DAT also a third, "FILE x K": that trace's
per-CPU streams repeated (times shifted) up to about EVENTS events, its real runs.  Prints events/s of ``merge_events`` (copies every event
into the merged arrays) and of the run merge (``merge_runs``: the order as runs),
best of 7 and median (CPU time of the thread), after one warm-up run that compiles or loads the kernels.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

try:
    from tracewatch.kernels.merge import merge_events, merge_runs_kernel  # noqa: E402
except ImportError:  # before the kernels package
    from tracewatch.formats.tracedat import _merge_runs_kernel as merge_runs_kernel, merge_events  # type: ignore  # noqa: E402


def streams(n: int, ncpu: int, burst: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` events over ``ncpu`` CPUs, each CPU's times sorted, the CPUs taking turns in runs
    of about ``burst`` events; returns (ts, starts, ends)."""
    rng = np.random.default_rng(seed)
    owner = np.repeat(rng.integers(0, ncpu, n // burst + 1), burst)[:n]
    ts_all = np.cumsum(rng.integers(1, 50, n)).astype(np.uint64)
    order = np.argsort(owner, kind="stable")
    ts = ts_all[order]
    ends = np.cumsum(np.bincount(owner, minlength=ncpu)).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return ts, starts, ends


def file_streams(path: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-CPU streams of the trace at ``path`` repeated, each copy after the last in
    time, until about ``n`` events; returns (ts, starts, ends)."""
    from tracewatch.formats.tracedat import TraceDatReader

    with TraceDatReader(path) as r:
        idx = r.index()
        cpu = idx.cpu.astype(np.int64)
        ts = idx.ts.astype(np.uint64) - np.uint64(idx.ts.min())
    span = int(ts.max()) + 1
    k = max(1, n // len(ts))
    ncpu = int(cpu.max()) + 1
    parts = []
    for c in range(ncpu):
        own = ts[cpu == c]
        parts.append(np.concatenate([own + np.uint64(i * span) for i in range(k)]))
    ends = np.cumsum([len(p) for p in parts]).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return np.concatenate(parts), starts, ends


def best_of(n: int, fn) -> tuple[float, float]:
    times = []
    for _ in range(n):
        # CPU time of this thread (the kernels run in it): steadier than the wall clock on a
        # machine shared with other work
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    times.sort()
    return times[0], times[len(times) // 2]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8_000_000
    ncpu = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    shapes = [("interleaved", lambda: streams(n, ncpu, 1)), ("bursty", lambda: streams(n, ncpu, 200))]
    if len(sys.argv) > 3:
        shapes.append((Path(sys.argv[3]).name.split(".")[0], lambda: file_streams(sys.argv[3], n)))
    for shape, make in shapes:
        ts, starts, ends = make()
        n = len(ts)
        ncpu = len(starts)
        off = np.arange(n, dtype=np.int64)
        ln = np.full(n, 16, np.int32)
        ty = np.zeros(n, np.uint16)
        out = (np.empty(n, np.int32), np.empty(n, np.uint64), np.empty(n, np.int64), np.empty(n, np.int32),
               np.empty(n, np.uint16), np.zeros(n, np.int64))
        none = np.zeros(0, np.int64)

        def merged() -> None:
            assert merge_events(ts, off, ln, ty, starts, ends, none, none, *out) == n

        runs = (np.empty(n + ncpu, np.int32), np.empty(n + ncpu, np.int64), np.empty(n + ncpu, np.int64))

        def as_runs() -> None:
            merge_runs_kernel(ts, starts, ends, *runs)

        for name, fn in (("merge_events", merged), ("merge_runs", as_runs)):
            fn()
            best, median = best_of(7, fn)
            print(f"{shape:12s} {name:13s} {n / best / 1e6:7.1f} M events/s best, {n / median / 1e6:7.1f} median")


if __name__ == "__main__":
    main()
