"""Uprobe overhead: what a probed call costs the traced program, in ns per call.

Usage (root, tracefs with uprobes, gcc): python bench/uprobes.py [CALLS]
       python bench/uprobes.py --install [N] [--libc]   (set-up cost of N probes, default 3000)

Builds a small C program that calls an empty noinline function CALLS times
(default 200000) and times the loop itself (clock_gettime), then runs it:
untraced, with an entry uprobe on the function (what funccount does), and
with entry + return uprobes (what funclatency and calls do), each through a
LiveSession that reads every event, best of 3 runs.  Prints the loop's ns
per call for each, the overhead over the untraced run, and the events seen
and lost.

``--install N`` times the set-up of many probes instead, what
``funccount 'libc:*'`` pays before its first event and after its last:
defining N entry uprobes in a private instance, enabling them there, and
disabling and removing them all again (close); see :func:`time_install`.

Measured on a 2-CPU VM (kernel 6.18, load average ~8 from other work), 3000
probes on a program's functions, one process mapping it:

                                  define   enable   disable+remove    total
  before (a write per probe,
          per event, per removal)  8.72 s  16.30 s        375.67 s   400.70 s
  after (32 KB blocks of
         definitions, the group's
         enable file, -:GROUP/)    0.58 s  17.43 s        150.41 s   168.41 s

What is left is the kernel's own work per probe: registering one (~4-6 ms
here) and above all disabling one, which waits for an RCU grace period
(~50-70 ms on this loaded machine), however the writes are grouped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

PROG_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
volatile long sink;
__attribute__((noinline)) void work(long i) { sink += i; }
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) work(i);
    clock_gettime(CLOCK_MONOTONIC, &b);
    FILE *f = fopen(argv[2], "w");
    fprintf(f, "%ld\n", (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec));
    fclose(f);
    return 0;
}
"""


def _loop_ns(result: str) -> int:
    with open(result) as f:
        return int(f.read())


def run_untraced(prog: str, calls: int, result: str) -> int:
    subprocess.run([prog, str(calls), result], check=True)
    return _loop_ns(result)


def run_traced(prog: str, calls: int, result: str, specs: list[str]) -> tuple[int, int, int]:
    from tracewatch.sources.session import LiveSession
    from tracewatch.sources.uprobes import ProbeSet

    probes = ProbeSet.from_specs(specs)
    seen = 0
    with LiveSession([], command=[prog, str(calls), result], setup=probes.install, buffer_kb=16384) as s:
        for chunk in s.chunks():
            seen += len(chunk)
        lost = sum(max(v, 0) for v in s.lost_events().values())
        if s.command_status != 0:
            raise SystemExit(f"the traced program failed with status {s.command_status}")
    return _loop_ns(result), seen, lost


MANY_C = r"""
#include <unistd.h>
volatile long sink;
%s
int main(void) { char c; return (int)read(0, &c, 1); }   /* mapped, idle, until stdin closes */
"""


def time_install(count: int, libc: bool = False) -> int:
    """Print how long defining, enabling and removing ``count`` entry uprobes takes.

    By default the probes are on ``count`` functions of a program built here and
    kept running (so the kernel really places each breakpoint, in one process);
    with ``libc``, on the first ``count`` functions of the C library, which every
    process maps: what ``funccount 'libc:*'`` does, and it slows the whole
    machine while the probes are on.
    """
    from tracewatch.sources.tracefs import Instance
    from tracewatch.sources.uprobes import ProbeSet

    with tempfile.TemporaryDirectory(prefix="tw-uprobe-bench-") as d:
        holder = None
        if libc:
            spec, where = "libc:*", "libc"
        else:
            src, prog = os.path.join(d, "many.c"), os.path.join(d, "many")
            with open(src, "w") as f:
                f.write(MANY_C % "\n".join(f"__attribute__((noinline)) void f{i}(void) {{ sink += {i}; }}"
                                           for i in range(count)))
            subprocess.run(["gcc", "-O1", "-o", prog, src], check=True)
            holder = subprocess.Popen([prog], stdin=subprocess.PIPE)
            spec, where = f"{prog}:f*", "a program's"
        try:
            probes = ProbeSet.from_specs([spec], max_probes=100_000)
            probes.probes = probes.probes[:count]
            t0 = time.perf_counter()
            with Instance() as inst:
                t1 = time.perf_counter()
                events = probes.install(inst)
                t2 = time.perf_counter()
                enabled = inst.enable(events)
                t3 = time.perf_counter()
            t4 = time.perf_counter()
        finally:
            if holder is not None:
                holder.stdin.close()
                holder.wait()
    print(f"{len(probes.probes)} uprobes on {where} functions (kernel {os.uname().release}): "
          f"instance {t1 - t0:.2f} s, define {t2 - t1:.2f} s, enable {t3 - t2:.2f} s ({len(enabled)} enabled), "
          f"disable and remove {t4 - t3:.2f} s, total {t4 - t0:.2f} s")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--install":
        if os.geteuid() != 0:
            print("bench/uprobes.py needs root (tracefs instances and uprobes)", file=sys.stderr)
            return 2
        rest = [a for a in argv[1:] if a != "--libc"]
        return time_install(int(rest[0]) if rest else 3000, libc="--libc" in argv)
    calls = int(argv[0]) if argv else 200_000
    if os.geteuid() != 0:
        print("bench/uprobes.py needs root (tracefs instances and uprobes)", file=sys.stderr)
        return 2
    if shutil.which("gcc") is None:
        print("bench/uprobes.py needs gcc to build the probed program", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tw-uprobe-bench-") as d:
        src, prog, result = os.path.join(d, "p.c"), os.path.join(d, "p"), os.path.join(d, "out")
        with open(src, "w") as f:
            f.write(PROG_C)
        subprocess.run(["gcc", "-O2", "-o", prog, src], check=True)
        base = min(run_untraced(prog, calls, result) for _ in range(3))
        rows = [("untraced", base, 0, 0)]
        for label, specs in (("entry uprobe", [f"{prog}:work"]),
                             ("entry + return", [f"{prog}:work", f"r:{prog}:work"])):
            best = None
            for _ in range(3):
                ns, seen, lost = run_traced(prog, calls, result, specs)
                if best is None or ns < best[0]:
                    best = (ns, seen, lost)
            assert best is not None
            rows.append((label, *best))
    print(f"uprobe overhead, {calls} calls of an empty function, best of 3 (kernel {os.uname().release})")
    print(f"{'':<16}{'ns/call':>10}{'overhead ns/call':>18}{'events':>10}{'lost':>8}")
    for label, ns, seen, lost in rows:
        over = "" if label == "untraced" else f"{(ns - base) / calls:.0f}"
        print(f"{label:<16}{ns / calls:>10.1f}{over:>18}{seen if label != 'untraced' else '':>10}"
              f"{lost if label != 'untraced' else '':>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
