"""Live capture under load: events seen, events lost, and tracewatch's CPU time per million events.

    python bench/live.py [--seconds 10] [--buffer-size KB]

(a) a per-event Python handler (counts syscalls per command, sched_switch per CPU) during a
    2-way parallel gcc build of small C files;
(b) a batch handler (numpy counting) during a tight syscall loop on one core
    (`dd if=/dev/zero of=/dev/null bs=1`, pinned to CPU 0; tracewatch pinned to CPU 1).
Both with raw_syscalls and sched events enabled.  Needs root and tracefs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PER_EVENT = '''
from tracewatch import on, at_end
calls = {}
switches = {}
@on("raw_syscalls:sys_enter")
def enter(ev):
    k = (ev.common_comm, ev.id)
    calls[k] = calls.get(k, 0) + 1
@on("sched:sched_switch")
def switch(ev):
    switches[ev.common_cpu] = switches.get(ev.common_cpu, 0) + 1
@at_end
def end():
    print("handled", sum(calls.values()) + sum(switches.values()))
'''

BATCH = '''
import numpy as np
from tracewatch import on_batch, at_end
total = [0]
ids = np.zeros(1024, np.int64)
@on_batch("raw_syscalls:sys_enter")
def enter(b):
    np.add.at(ids, b.id & 1023, 1)
    total[0] += len(b)
@on_batch("sched:sched_switch")
def switch(b):
    total[0] += len(b)
@at_end
def end():
    print("handled", total[0])
'''


def make_build(tmp: Path, files: int = 40) -> Path:
    src = tmp / "build"
    src.mkdir()
    for i in range(files):
        (src / f"f{i}.c").write_text(
            f"#include <stdio.h>\n#include <string.h>\nint f{i}(int x) {{ char b[64]; snprintf(b, 64, \"%d\", x);"
            f" return (int)strlen(b) + {i}; }}\n")
    (src / "main.c").write_text("int main(void) { return 0; }\n")
    objs = " ".join(f"f{i}.o" for i in range(files))
    (src / "Makefile").write_text(f"all: prog\nprog: main.o {objs}\n\t$(CC) -o $@ $^\n%.o: %.c\n\t$(CC) -O1 -c $<\n")
    return src


def run_case(label: str, script: Path, command: list[str], buffer_kb: int, pin_cpu: str | None) -> None:
    cmd = [sys.executable, "-m", "tracewatch", "run", str(script), "-e", "raw_syscalls", "-e", "sched:*",
           "--buffer-size", str(buffer_kb), "--", *command]
    if pin_cpu is not None:
        cmd = ["taskset", "-c", pin_cpu] + cmd
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    m = re.search(r"(\d+) events seen, (\d+) lost.*tracewatch CPU ([\d.]+) s", err)
    if status != 0 or not m:
        print(f"{label}: tracewatch failed (status {status}):\n{err[-3000:]}")
        return
    seen, lost = int(m.group(1)), int(m.group(2))
    cpu = float(m.group(3))  # tracewatch's own (wait4's usage would include the traced command)
    handled = re.search(r"handled (\d+)", out)
    print(f"{label}")
    print(f"    events seen {seen:>12,}   lost {lost:>10,}   handled {int(handled.group(1)) if handled else 0:>12,}")
    print(f"    wall {wall:6.1f} s   events/s {seen / wall / 1e6:6.2f} M   tracewatch CPU {cpu:6.2f} s"
          f"   = {cpu / max(seen, 1) * 1e6:6.2f} s per million events")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the dd loop (b)")
    ap.add_argument("--buffer-size", type=int, default=65536, help="per-CPU ring buffer, KB")
    ap.add_argument("--only", choices=("a", "b"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/live.py needs root (tracefs)")
    with tempfile.TemporaryDirectory(prefix="tracewatch-live-") as tmp:
        tmpd = Path(tmp)
        per_event = tmpd / "per_event.py"
        per_event.write_text(PER_EVENT)
        batch = tmpd / "batch.py"
        batch.write_text(BATCH)
        if args.only in (None, "a"):
            src = make_build(tmpd)
            run_case("(a) per-event handler, make -j2 of 40 small C files", per_event,
                     ["make", "-s", "-j2", "-C", str(src)], args.buffer_size, None)
        if args.only in (None, "b"):
            run_case(f"(b) batch handler, dd bs=1 on CPU 0 for {args.seconds:g} s (tracewatch on CPU 1)", batch,
                     ["taskset", "-c", "0", "timeout", str(args.seconds), "dd", "if=/dev/zero", "of=/dev/null",
                      "bs=1"], args.buffer_size, "1")


if __name__ == "__main__":
    main()
