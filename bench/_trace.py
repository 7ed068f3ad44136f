"""Make (or reuse) the benchmark trace: raw_syscalls + sched events from a real workload.

Recorded with ``tracewatch record`` on this kernel: a ``dd bs=1`` syscall loop (read/write pairs)
beside a shell loop that forks short processes (sched events).  Cached in /tmp by size.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRACEWATCH = [sys.executable, "-m", "tracewatch"]


def workload(iterations: int) -> list[str]:
    return ["sh", "-c",
            f"dd if=/dev/zero of=/dev/null bs=1 count={iterations} 2>/dev/null & "
            "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; wait"]


def bench_trace(iterations: int = 200_000, path: str | None = None) -> str:
    """Path of a trace.dat of raw_syscalls + sched events (recorded once, then reused)."""
    out = Path(path or f"/tmp/tracewatch-bench-{iterations}.dat")
    if out.exists() and out.stat().st_size > 0:
        return str(out)
    cmd = TRACEWATCH + ["record", "-e", "raw_syscalls", "-e", "sched:*", "--buffer-size", "65536",
                        "-o", str(out), "--", *workload(iterations)]
    print("bench: recording", " ".join(cmd[2:]), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    return str(out)


# A steady getppid() load at a given event rate (argv[1]; two events per call), pinned to the
# CPUs in argv[2] when given; it falls behind gracefully instead of bursting to catch up.
GETPPID_LOAD = """
import os, sys, time
if len(sys.argv) > 2:
    os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(",")})
rate = float(sys.argv[1]) / 2
tick = 0.005
per_tick = max(1, int(rate * tick))
getppid = os.getppid
nxt = time.monotonic()
while True:
    for _ in range(per_tick):
        getppid()
    nxt += tick
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
    elif d < -1:
        nxt = time.monotonic()
"""


def start_getppid_load(rate: float, cpus: str | None = None) -> subprocess.Popen:
    """Start the getppid load generator (see GETPPID_LOAD); the caller kills it."""
    argv = [sys.executable, "-c", GETPPID_LOAD, str(rate)] + ([cpus] if cpus else [])
    return subprocess.Popen(argv)
