"""``tracewatch cleanup``: remove tracefs instances and uprobes left by tracewatch runs that were killed.

Every run removes what it set up on its way out; only SIGKILL (or a crash of the
machine's power) can leave something behind, and the next run cleans that too.
This command does it on demand.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..cli import run_tool

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch cleanup``."""
    p = argparse.ArgumentParser(prog="tracewatch cleanup", description=__doc__.splitlines()[0],
                                epilog="example:\n  tracewatch cleanup      # remove what killed runs left",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.parse_args(argv)

    def body() -> int:
        from ..sources.tracefs import TraceFS

        removed = TraceFS().cleanup_stale()
        for what in removed:
            print(f"removed {what}")
        if not removed:
            print("nothing to clean up", file=sys.stderr)
        return 0

    return run_tool(body, prog="tracewatch")
