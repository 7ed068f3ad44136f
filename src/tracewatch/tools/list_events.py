"""``tracewatch list``: the kernel's trace events, and with ``-v`` their fields and types."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import CaptureError
from ._command import tool_main, tool_parser

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch list                       # every event: system:name
  tracewatch list 'sched:*'             # the scheduler's events
  tracewatch list -v sched:sched_switch # with fields, types, offsets and sizes
  tracewatch list -i trace.dat -v       # the events a trace.dat file describes
"""


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("list", "List trace events.", EXAMPLES)
    p.add_argument("glob", nargs="*", default=["*"], help="event globs (default: all)")
    p.add_argument("-v", "--verbose", action="store_true", help="show each event's fields")
    p.add_argument("-i", "--input", metavar="FILE", help="list the events of a trace.dat file instead")
    return p


def describe_fields(fmt) -> list[str]:
    """One line per field: type, name, offset, size, signedness, kind."""
    rows = []
    for f in fmt.fields:
        if f.name.startswith("common_"):
            continue
        kind = "__data_loc " if f.data_loc else "__rel_loc " if f.rel_loc else ""
        arr = f"[{f.array_len}]" if f.array_len else "[]" if f.array_len == 0 else ""
        rows.append(f"    {kind}{f.type} {f.name}{arr};".ljust(44)
                    + f" offset:{f.offset} size:{f.size} {'signed' if f.signed else 'unsigned'}")
    return rows


def _list(args: argparse.Namespace) -> int:
    import fnmatch

    pats = [g.replace("/", ":") for g in args.glob]

    def wanted(full: str) -> bool:
        name = full.split(":", 1)[1]
        return any(fnmatch.fnmatchcase(full, p) if ":" in p else fnmatch.fnmatchcase(name, p) for p in pats)

    out = []
    if args.input:
        from ..formats.tracedat import TraceDatReader

        reader = TraceDatReader(args.input)
        fmts = sorted(reader.formats.values(), key=lambda f: f.full_name)
        for fmt in fmts:
            if wanted(fmt.full_name):
                out.append(fmt.full_name)
                if args.verbose:
                    out += describe_fields(fmt)
    else:
        from ..sources.tracefs import TraceFS

        tfs = TraceFS()
        names = [n for n in tfs.available_events() if wanted(n)]
        if not names:
            raise CaptureError(f"no event matches {' '.join(args.glob)!r}")
        for full in names:
            out.append(full)
            if args.verbose:
                system, _, name = full.partition(":")
                out += describe_fields(tfs.event_format(system, name))
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch list``."""
    return tool_main(build_parser(), _list, argv)
