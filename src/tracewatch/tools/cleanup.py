"""``tracewatch cleanup``: remove tracefs instances, uprobes and unfinished dumps left by tracewatch runs that were killed.

Every run removes what it set up on its way out; only SIGKILL (or a crash of the
machine's power) can leave something behind, and the next run cleans that too.
This command does it on demand: tracefs instances and uprobe groups of dead
pids, and the temporaries (``.NAME.XXXXXXXX.tmp``) of dumps cut short in the
dump directories of killed flight recorders (noted in /run/tracewatch while
they run) and in every ``--out DIR`` given.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ._command import tool_main, tool_parser

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch cleanup                    # remove what killed runs left
  tracewatch cleanup --out /var/lib/fr  # and unfinished dumps in a --out DIR
"""


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("cleanup", "Remove tracefs instances, uprobes and unfinished dumps\nleft by tracewatch runs that were killed.", EXAMPLES)
    p.add_argument("--out", action="append", default=[], metavar="DIR",
                   help="a dump directory (flight --out) to remove unfinished dumps from (repeatable); "
                        "left alone while a running recorder writes there")
    p.add_argument("--no-tracefs", action="store_true",
                   help="only the dump directories: leave tracefs alone (no root needed)")
    return p


def _cleanup(args: argparse.Namespace) -> int:
    from ..recorder.dump import DumpDir, cleanup_dead_dump_dirs

    removed: list[str] = []
    for out in args.out:
        d = DumpDir(out, create=False)
        try:
            if d.shared_with is not None:
                print(f"tracewatch: {out}: a running recorder (pid {d.shared_with}) writes here; "
                      "its files are left alone", file=sys.stderr)
            removed += d.swept or []
        finally:
            d.close()
    removed += cleanup_dead_dump_dirs()
    if not args.no_tracefs:
        from ..sources.tracefs import TraceFS

        removed += TraceFS().cleanup_stale()
    for what in removed:
        print(f"removed {what}")
    if not removed:
        print("nothing to clean up", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch cleanup``."""
    return tool_main(build_parser(), _cleanup, argv)
