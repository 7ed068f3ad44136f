"""``tracewatch calls``: an indented call tree of user functions per thread, with durations.

Every function matching the patterns gets an entry and a return uprobe; calls
nest per thread into a tree printed the way the kernel's function_graph
tracer prints kernel code (see :mod:`tracewatch.script.calltree`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..script.calltree import CallGraph
from ._command import tool_parser
from ._functrace import add_common_options, functrace_main, open_functrace, print_notes, start_line

__all__ = ["main", "build_parser", "trace_calls"]

EXAMPLES = """\
examples:
  tracewatch calls './prog:*' -- ./prog   # ./prog's functions, per thread
  tracewatch calls 'libc:malloc' 'libc:free' -p 181 -d 2
                                          # malloc and free of pid 181 for 2 s
  tracewatch calls --stream 'work_*' -p 181
                                          # lines as they happen, thread first
  tracewatch calls 'work_*' -i trace.dat  # the tree of a recording's probes
"""


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("calls", "Print the calls of user-space functions (uprobes)\nas an indented tree per thread.", EXAMPLES)
    p.add_argument("pattern", nargs="+", metavar="FUNC-PATTERN",
                   help="[LIBRARY:]FUNCTION, globs allowed (./prog:*, libc:malloc)")
    p.add_argument("--stream", action="store_true",
                   help="print each line when it is known (thread id first) instead of one tree per thread")
    p.add_argument("--max-lines", type=int, default=200_000, metavar="N",
                   help="lines kept for the per-thread trees (default 200000)")
    add_common_options(p)
    return p


def trace_calls(ft, graph: CallGraph) -> int | None:  # noqa: ANN001 (a FuncTrace)
    """Feed every probe event of ``ft`` to ``graph`` in time order; returns the last timestamp."""
    functions = ft.functions
    targets = ft.targets
    last = None
    for chunk in ft.chunks():
        for ev in chunk.events(only=ft.wants):
            tid = ev.common_pid
            if ft.tid_filter is not None and tid != ft.tid_filter:
                continue
            fidx, is_entry = targets[ev.format_.id]
            if is_entry:
                graph.enter(tid, functions[fidx], ev.common_ts)
            else:
                graph.exit(tid, functions[fidx], ev.common_ts)
        if len(chunk):
            last = int(chunk.ts[-1])
    return last


def _run(args: argparse.Namespace) -> int:
    with open_functrace(args, args.pattern, both=True) as ft:
        print(start_line(ft, args.pattern), file=sys.stderr, flush=True)
        comm = getattr(ft.source.context, "comm", None)
        graph = CallGraph(sys.stdout, by_thread=not args.stream, comm=comm, max_lines=args.max_lines)
        last = trace_calls(ft, graph)
        graph.finish(now=last)
        lost = ft.lost_events()
    c = graph.stacks.counters()
    print_notes([(lost, "events lost"), (c["orphans"], "returns without their entry")])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch calls``; returns the exit status."""
    return functrace_main(build_parser(), _run, argv)
