"""``tracewatch status``: what a running flight recorder is doing, from its status file."""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from ._command import tool_main, tool_parser

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch status /var/lib/fr   # DIR/status.json of flight --daemon --out
  tracewatch status /run/fr.json -j   # the status document as JSON
"""


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("status", "Show a flight recorder's status file\n(uptime, events/s, lost, dumps, handler lag).",
                    EXAMPLES)
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
    return tool_main(build_parser(), _run, argv)
