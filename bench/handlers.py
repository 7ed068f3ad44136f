"""Handler speed: the same work as a per-event handler, a batch handler, and a `perf script -s` script.

    python bench/handlers.py [--iterations N]

Records one workload twice (dd bs=1 syscall loop + a fork loop; raw_syscalls and
sched events): with `tracewatch record` (trace.dat) and with `perf record -a`
(perf.data).  The work: count sys_enter per (pid, syscall id) and count
sched_switch events.  Prints end-to-end events/s (process start to exit, every
event in the file read) for
  tracewatch run, per-event handler (@on)
  tracewatch run, batch handler (@on_batch)
  perf script -s, the same counting as a perf script
and the ratios against perf script (best of 5; the median and the rate after subtracting the
start-up are noted), the start-up itself (the batch script over a tiny trace: interpreter,
imports, loading the compiled kernels); then the same two tracewatch scripts timed inside one
warm process, from opening the file to the end hooks' return (the engine without start-up).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _trace import REPO, bench_trace, workload  # noqa: E402

PER_EVENT = '''
from tracewatch import on, at_end
counts = {}
switches = [0]
@on("raw_syscalls:sys_enter")
def enter(ev):
    k = (ev.common_pid, ev.id)
    counts[k] = counts.get(k, 0) + 1
@on("sched:sched_switch")
def switch(ev):
    switches[0] += 1
@at_end
def end():
    print("pairs", len(counts), "sys_enter", sum(counts.values()), "switches", switches[0])
'''

BATCH = '''
import numpy as np
from tracewatch import on_batch, at_end, Map
counts = Map(int)
switches = [0]
@on_batch("raw_syscalls:sys_enter")
def enter(b):
    counts.add_counts((b.common_pid, b.id))
@on_batch("sched:sched_switch")
def switch(b):
    switches[0] += len(b)
@at_end
def end():
    print("pairs", len(counts), "sys_enter", sum(v for _, v in counts.items()), "switches", switches[0])
'''

PERF = '''
import os, sys
sys.path.append(os.environ['PERF_EXEC_PATH'] + '/scripts/python/Perf-Trace-Util/lib/Perf/Trace')
from perf_trace_context import *
from Core import *
counts = {}
switches = [0]
other = [0]
def raw_syscalls__sys_enter(event_name, context, common_cpu, common_secs, common_nsecs, common_pid,
                            common_comm, common_callchain, id, args):
    k = (common_pid, id)
    counts[k] = counts.get(k, 0) + 1
def sched__sched_switch(event_name, context, common_cpu, common_secs, common_nsecs, common_pid,
                        common_comm, common_callchain, prev_comm, prev_pid, prev_prio, prev_state,
                        next_comm, next_pid, next_prio):
    switches[0] += 1
def trace_unhandled(event_name, context, event_fields_dict):
    other[0] += 1
def trace_end():
    n = sum(counts.values())
    print("pairs", len(counts), "sys_enter", n, "switches", switches[0], "total", n + switches[0] + other[0])
'''


def timed(cmd: list[str], **kw) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return dt, r.stdout


def count_events(path: str) -> int:
    sys.path.insert(0, str(REPO / "src"))
    from tracewatch.formats.tracedat import TraceDatReader

    return len(TraceDatReader(path).index())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=1_000_000,
                    help="dd iterations of the workload (4 events each; 1M gives a ~4M-event, ~220 MB trace)")
    args = ap.parse_args()
    tw_trace = bench_trace(args.iterations)
    n_tw = count_events(tw_trace)
    tmp = Path(tempfile.mkdtemp(prefix="tracewatch-bench-"))
    scripts = {}
    for name, text in (("per_event.py", PER_EVENT), ("batch.py", BATCH), ("perf_count.py", PERF)):
        scripts[name] = tmp / name
        scripts[name].write_text(text)
    tw = [sys.executable, "-m", "tracewatch", "run"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    # as an installed package runs: with its modules' bytecode cached (some shells set this)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for name in ("batch.py", "per_event.py"):  # warm caches (bytecode, compiled kernels, page cache)
        timed(tw + [str(scripts[name]), "-i", tw_trace], env=env)
    # the fixed cost of any run: interpreter, imports, loading the compiled kernels, a tiny file
    # (best of 5, as the runs it is subtracted from)
    small = bench_trace(2_000)
    startup = min(timed(tw + [str(scripts["batch.py"]), "-i", small], env=env)[0] for _ in range(5))
    rows = []
    for label, script in (("tracewatch run, per-event handler", "per_event.py"),
                          ("tracewatch run, batch handler", "batch.py"),
                          ("tracewatch run, the perf script", "perf_count.py")):
        runs = sorted(timed(tw + [str(scripts[script]), "-i", tw_trace], env=env) for _ in range(5))
        t, out = runs[0][0], runs[0][1].strip().splitlines()[-1]
        note = f"median {n_tw / runs[2][0] / 1e3:.0f} k/s; after start-up {n_tw / (t - startup) / 1e3:.0f} k/s"
        rows.append((label, n_tw / t, t, f"{out}  [{note}]"))
    # the engine alone: a warm process, timed from opening the file to the end hooks' return
    sys.path.insert(0, str(REPO / "src"))
    import contextlib
    import io

    from tracewatch.script.runner import ScriptRunner
    from tracewatch.sources.file import FileSource

    def in_process(script: Path) -> list[float]:
        times = []
        for _ in range(5):
            runner = ScriptRunner(str(script), [])
            with contextlib.redirect_stdout(io.StringIO()):
                t = time.perf_counter()
                with FileSource(tw_trace) as src:
                    runner.run(src)
                times.append(time.perf_counter() - t)
        return sorted(times)

    for label, script in (("  engine only (warm process): per-event handler", "per_event.py"),
                          ("  engine only (warm process): batch handler", "batch.py")):
        times = in_process(scripts[script])
        rows.append((label, n_tw / times[0], times[0],
                     f"(open file .. end hooks; median {n_tw / times[2] / 1e6:.1f} M/s)"))
    perf_rate = None
    if shutil.which("perf"):
        pdata = tmp / "perf.data"
        subprocess.run(["perf", "record", "-q", "-e", "raw_syscalls:*", "-e", "sched:*", "-a", "-m", "16M",
                        "-o", str(pdata), "--", *workload(args.iterations)],
                       check=True, capture_output=True)
        t, out = min((timed(["perf", "script", "-i", str(pdata), "-s", str(scripts["perf_count.py"])])
                      for _ in range(2)), key=lambda x: x[0])
        total = int(re.search(r"total (\d+)", out).group(1))
        perf_rate = total / t
        rows.append(("perf script -s (perf.data of the same workload)", perf_rate, t, out.strip().splitlines()[-1]))
    print(f"trace.dat: {tw_trace} ({n_tw} events)")
    print(f"start-up (the batch script over {small}, best of 5): {startup:.2f} s")
    for label, rate, t, out in rows:
        ratio = f"  {rate / perf_rate:6.1f}x perf script" if perf_rate else ""
        print(f"{label:<52} {rate / 1e3:10.0f} k events/s  ({t:.2f} s){ratio}")
        print(f"{'':<52} -> {out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(REPO)
    main()
