"""Decode speed: columnar batches and `report --raw`, next to trace-cmd on the same file.

    python bench/decode.py [FILE]

Without FILE, records a raw_syscalls + sched trace of a few tens of MB first
(bench/_trace.py; needs root and tracefs).  Prints events/s for
  (a) walking every page into columnar batches (all fixed-size fields decoded),
  (b) `tracewatch report --raw FILE > /dev/null` and `trace-cmd report -R FILE > /dev/null`,
  (c) the same without --raw / -R,
(a) best of 10 in one process (median too), (b)/(c) best of 3, with the ratio against trace-cmd.
(a) runs the file fast path: FileSource.split() (one k-way merge writing each event
straight into its type's rows, no merged arrays), then every batch's scalar columns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _trace import REPO, bench_trace  # noqa: E402


def best_of(n: int, fn) -> tuple[float, float]:
    """(best, median) seconds of ``n`` runs of ``fn``."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[0], times[len(times) // 2]


def columnar(path: str) -> int:
    """Open ``path``, index it, split it into per-type batches, decode every fixed-size scalar column."""
    from tracewatch.sources.file import FileSource

    src = FileSource(path)
    n = 0
    for b, _pos in src.split():
        for f in b.format_.fields:
            if not f.is_array and f.size in (1, 2, 4, 8):
                b.column_(f.name)
        n += len(b)
    src.close()
    return n


def command_time(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of ``cmd`` with stdout to /dev/null, best of 3.

    CPU time (user + system) is printed too because wall time on a shared 2-core
    machine swings with other load; both programs are single-threaded.
    """
    best = (float("inf"), float("inf"))
    for _ in range(3):
        with open(os.devnull, "wb") as null:
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.DEVNULL)
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t
        if status:
            raise SystemExit(f"failed: {' '.join(cmd)}")
        best = (min(best[0], wall), min(best[1], usage.ru_utime + usage.ru_stime))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--iterations", type=int, default=200_000, help="dd iterations when recording")
    args = ap.parse_args()
    path = args.file or bench_trace(args.iterations)
    size = os.path.getsize(path)
    columnar(path)  # warm: numba cache, page cache
    n = columnar(path)
    t, med = best_of(10, lambda: columnar(path))
    print(f"file: {path}  {size / 1e6:.1f} MB  {n} events")
    print(f"(a) columnar decode (all pages -> batches, fixed fields):  {n / t / 1e6:8.1f} M events/s  ({t:.3f} s)"
          f"   median {n / med / 1e6:.1f} M events/s ({med:.3f} s)")
    tw = [sys.executable, "-m", "tracewatch", "report"]
    env_ok = shutil.which("trace-cmd") is not None
    for label, flag_tw, flag_tc in (("(b) report --raw", ["--raw"], ["-R"]), ("(c) report      ", [], [])):
        w_tw, c_tw = command_time(tw + flag_tw + [path])
        line = f"{label}: tracewatch {n / w_tw / 1e3:6.0f} k events/s ({w_tw:.2f} s wall, {c_tw:.2f} s CPU)"
        if env_ok:
            w_tc, c_tc = command_time(["trace-cmd", "report", *flag_tc, path])
            line += (f"   trace-cmd {n / w_tc / 1e3:6.0f} k events/s ({w_tc:.2f} s wall, {c_tc:.2f} s CPU)"
                     f"   ratio {w_tc / w_tw:.2f}x wall, {c_tc / c_tw:.2f}x CPU")
        else:
            line += "   (trace-cmd not installed: no comparison)"
        print(line)


if __name__ == "__main__":
    os.chdir(REPO)
    main()
