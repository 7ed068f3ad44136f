"""``tracewatch funclatency``: how long user functions take, as a log2 histogram (bcc's funclatency).

Each function gets an entry and a return uprobe; entries and returns are
paired per thread and function (nested and recursive calls pair innermost
first) in one compiled pass per chunk, and every duration goes into a
power-of-2 histogram printed as bcc prints it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from ..script.histogram import Hist
from ..script.pairing import Pairing
from ._command import tool_parser
from ._functrace import add_common_options, functrace_main, open_functrace, print_notes, start_line

__all__ = ["main", "build_parser", "measure_latency", "summary_line", "UNITS"]

EXAMPLES = """\
examples:
  tracewatch funclatency 'libc:malloc' -p 181  # malloc latency of pid 181, ns
  tracewatch funclatency -u 'libc:read' -d 10  # read() in microseconds, 10 s
  tracewatch funclatency -m 'slow_*' -- ./prog # ./prog's slow_*, milliseconds
  tracewatch funclatency 'libc:malloc' -i trace.dat
                                  # a recording with entry and return probes
"""

#: unit name -> ns per unit (bcc's nsecs/usecs/msecs)
UNITS = {"nsecs": 1, "usecs": 1000, "msecs": 1_000_000}


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("funclatency", "Time user-space function calls (uprobes) and print a log2 histogram.", EXAMPLES)
    p.add_argument("pattern", nargs="+", metavar="FUNC",
                   help="[LIBRARY:]FUNCTION, globs allowed (libc:malloc, ./prog:slow_*)")
    unit = p.add_mutually_exclusive_group()
    unit.add_argument("-u", "--microseconds", dest="unit", action="store_const", const="usecs",
                      help="microsecond histogram")
    unit.add_argument("-m", "--milliseconds", dest="unit", action="store_const", const="msecs",
                      help="millisecond histogram")
    add_common_options(p)
    p.set_defaults(unit="nsecs")
    return p


class LatencyResult:
    """Per function: a histogram (in the unit), total ns and count; plus pairing trouble."""

    def __init__(self, functions: list[str], unit: str) -> None:
        self.functions = functions
        self.unit = unit
        self.hists = [Hist() for _ in functions]
        self.total_ns = np.zeros(len(functions), np.int64)
        self.count = np.zeros(len(functions), np.int64)
        self.orphans = 0
        self.dropped = 0
        self.open = 0


def measure_latency(ft, unit: str = "nsecs") -> LatencyResult:  # noqa: ANN001 (a FuncTrace)
    """Pair the entry and return events of ``ft`` and histogram the durations."""
    nf = max(1, len(ft.functions))
    res = LatencyResult(ft.functions, unit)
    pairing = Pairing(max_open=1 << 20, max_depth=1024)
    div = UNITS[unit]
    for chunk in ft.chunks():
        if any(True for _ in chunk.losses()):
            res.dropped += pairing.lost()
        keys, ts, enter, pos = [], [], [], []
        for batch, p in chunk.batches(only=ft.wants):
            fidx, is_entry = ft.targets[batch.format_.id]
            tid = batch.common_pid.astype(np.int64)
            sel = slice(None) if ft.tid_filter is None else (tid == ft.tid_filter)
            keys.append(tid[sel] * nf + fidx)
            ts.append(batch.common_ts[sel])
            enter.append(np.full(len(keys[-1]), is_entry))
            pos.append(p[sel])
        if not keys:
            continue
        order = np.argsort(np.concatenate(pos), kind="stable")
        r = pairing.feed_arrays(np.concatenate(keys)[order], np.concatenate(ts)[order],
                                np.concatenate(enter)[order])
        if len(r.duration) == 0:
            continue
        fidx = (r.key % nf).astype(np.int64)
        for f in np.unique(fidx).tolist():
            d = r.duration[fidx == f]
            res.hists[f].add_many(d // div)
            res.total_ns[f] += int(d.sum())
            res.count[f] += len(d)
    res.orphans = pairing.orphans
    res.dropped += pairing.dropped + pairing.evicted
    res.open = len(pairing)
    return res


def summary_line(total_ns: int, count: int, unit: str) -> str:
    """bcc's ``avg = A unit, total: T unit, count: N`` line.

    Both values are whole units rounded down from the exact nanoseconds, as
    the histogram's buckets are: rounding the average to nearest but the total
    down printed ``avg = 17 usecs, total: 16 usecs, count: 1`` for one call
    of 16.6 us.
    """
    div = UNITS[unit]
    return f"\navg = {total_ns // (count * div)} {unit}, total: {total_ns // div} {unit}, count: {count}\n"


def format_result(res: LatencyResult) -> str:
    out = []
    many = len(res.functions) > 1
    for i, name in enumerate(res.functions):
        if many:
            if not res.count[i]:
                continue
            out.append(f"\nFunction = {name}\n")
        out.append(res.hists[i].format(style="bcc", val_type=res.unit))
        if res.count[i]:
            out.append(summary_line(int(res.total_ns[i]), int(res.count[i]), res.unit))
    if not res.count.any():
        out.append("no completed calls\n")
    return "".join(out)


def _run(args: argparse.Namespace) -> int:
    with open_functrace(args, args.pattern, both=True) as ft:
        if not ft.return_types:
            from ..errors import CaptureError

            raise CaptureError(f"{args.input}: the recording has no return probes for these functions; "
                               f"latency needs entry and return events")
        print(start_line(ft, args.pattern), file=sys.stderr, flush=True)
        res = measure_latency(ft, args.unit)
        lost = ft.lost_events()
    sys.stdout.write(format_result(res))
    print_notes([(lost, "events lost"), (res.orphans, "returns without their entry (calls begun before tracing)"),
                 (res.open, "calls still running at the end")])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch funclatency``; returns the exit status."""
    return functrace_main(build_parser(), _run, argv)
