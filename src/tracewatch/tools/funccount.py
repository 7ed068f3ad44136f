"""``tracewatch funccount``: count calls of user functions, like bcc's funccount.

Each function matching the patterns gets an entry uprobe; the report counts
the calls per function.  ``-i FILE`` counts the probe events of a recording.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from ._command import tool_parser
from ._functrace import add_common_options, functrace_main, open_functrace, start_line

__all__ = ["main", "build_parser", "count_calls"]

EXAMPLES = """\
examples:
  tracewatch funccount 'libc:malloc' -p 181  # malloc calls of process 181
  tracewatch funccount 'libc:str*' -d 5      # libc functions "str*", for 5 s
  tracewatch funccount 'work_*' -- ./prog    # ./prog's work_* while it runs
  tracewatch funccount '/usr/bin/python3:_PyEval_*' -p 181
                                             # a program by path
  tracewatch funccount 'libc:malloc' -i trace.dat
                                             # the malloc probes of a recording
"""


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("funccount", "Count calls of user-space functions (uprobes), per function.", EXAMPLES)
    p.add_argument("pattern", nargs="+", metavar="PATTERN",
                   help="[LIBRARY:]FUNCTION, globs allowed (libc:malloc, ./prog:work_*)")
    add_common_options(p)
    return p


def count_calls(ft) -> np.ndarray:  # noqa: ANN001 (a FuncTrace)
    """Calls per function of ``ft`` (entry events; return events for functions that have only those)."""
    counts = np.zeros(len(ft.functions), np.int64)
    returns = np.zeros(len(ft.functions), np.int64)
    has_entry = np.zeros(len(ft.functions), bool)
    for t in ft.entry_types:
        has_entry[ft.targets[t][0]] = True
    for chunk in ft.chunks():
        for batch, _pos in chunk.batches(only=ft.wants):
            fidx, is_entry = ft.targets[batch.format_.id]
            n = len(batch) if ft.tid_filter is None else int(np.count_nonzero(batch.common_pid == ft.tid_filter))
            (counts if is_entry else returns)[fidx] += n
    return np.where(has_entry, counts, returns)


def _run(args: argparse.Namespace) -> int:
    with open_functrace(args, args.pattern, both=False) as ft:
        print(start_line(ft, args.pattern), file=sys.stderr, flush=True)
        try:
            counts = count_calls(ft)
        except KeyboardInterrupt:  # a second Ctrl-C: report what was counted
            counts = None
        lost = ft.lost_events()
    if counts is None:
        return 130
    width = max([40] + [len(f) + 2 for f in ft.functions])
    print(f"{'FUNC':<{width}}{'COUNT':>8}")
    for i in sorted(range(len(ft.functions)), key=lambda i: (int(counts[i]), ft.functions[i])):
        if counts[i]:
            print(f"{ft.functions[i]:<{width}}{int(counts[i]):>8}")
    if lost:
        print(f"tracewatch: {lost} events lost: counts are low (a bigger buffer: fewer functions)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch funccount``; returns the exit status."""
    return functrace_main(build_parser(), _run, argv)
