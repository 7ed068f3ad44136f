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

from ..cli import run_tool

__all__ = ["main"]

EXAMPLES = """\
examples:
  tracewatch cleanup                    # remove what killed runs left
  tracewatch cleanup --out /var/lib/fr  # also unfinished dumps in a flight recorder's --out DIR
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch cleanup``."""
    p = argparse.ArgumentParser(prog="tracewatch cleanup", description=__doc__.splitlines()[0],
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", action="append", default=[], metavar="DIR",
                   help="a dump directory (flight --out) to remove unfinished dumps from (repeatable); "
                        "left alone while a running recorder writes there")
    p.add_argument("--no-tracefs", action="store_true",
                   help="only the dump directories: leave tracefs alone (no root needed)")
    args = p.parse_args(argv)

    def body() -> int:
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

    return run_tool(body, prog="tracewatch")
