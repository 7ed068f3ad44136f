"""``tracewatch run``: run a Python script's handlers over a trace.dat file.

The script registers handlers with ``tracewatch``'s decorators (``@on``,
``@on_batch``, ``@every``, ``@at_end``, ...) or is a ``perf script -s`` script
(``sched__sched_switch(...)``, ``trace_end()``), which runs unmodified.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..cli import run_tool
from ..errors import TraceFormatError

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch run count.py -i trace.dat              # run count.py's handlers over a file
  tracewatch run count.py -i trace.dat -- bash      # pass 'bash' to the script (sys.argv[1])
  tracewatch run syscall-counts.py -i trace.dat     # a perf script -s script, unmodified
  tracewatch run top.py -i trace.dat --on-error=skip
                                                    # report handler errors and go on
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracewatch run",
        description="Run a Python script's event handlers over a trace.dat file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("script", help="the Python script")
    p.add_argument("-i", "--input", metavar="FILE", help="trace.dat file to read")
    p.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                   help="when a handler raises: stop the run (default) or skip the event")
    p.add_argument("--keep-going", action="store_true", help="skip damaged pages of the input")
    p.add_argument("-a", "--arg", dest="script_args", action="append", default=[], metavar="ARG",
                   help="an argument for the script (repeatable); with -i, the words after -- too")
    return p


def split_double_dash(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: (tracewatch's options, what follows)."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _run(args: argparse.Namespace) -> int:
    from ..script.runner import ScriptRunner
    from ..sources.file import FileSource

    if not args.input:
        raise TraceFormatError("no input: give a trace.dat file with -i FILE (live capture: see 'tracewatch run --help')")
    runner = ScriptRunner(args.script, args.script_args, on_error=args.on_error)
    source = FileSource(args.input, keep_going=args.keep_going)
    try:
        d = runner.run(source)
    finally:
        source.close()
    if d.errors:
        print(f"tracewatch: {d.errors} handler error(s) skipped", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch run``; returns the exit status."""
    own, rest = split_double_dash(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    args.script_args = list(args.script_args) + rest
    return run_tool(lambda: _run(args), prog="tracewatch")
