"""``tracewatch status``: what a running flight recorder is doing, from its status file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ..cli import run_tool

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch status /var/lib/fr               # DIR/status.json of `tracewatch flight --daemon --out DIR`
  tracewatch status /run/fr.json -j           # the status document as JSON
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracewatch status",
        description="Show a flight recorder's status file (uptime, events/s, lost, dumps, handler lag).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", help="the status file, or the --out directory of a --daemon run")
    p.add_argument("-j", "--json", action="store_true", help="print the JSON document")
    return p


def _run(args: argparse.Namespace) -> int:
    from ..recorder.daemon import format_status, read_status

    doc = read_status(args.path)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_status(doc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch status``; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_tool(lambda: _run(args), prog="tracewatch")
