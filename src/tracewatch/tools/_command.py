"""What every tool shares: the registry of commands, the parser, the ``--`` split, the error policy.

A tool is one module in this package with ``main(argv) -> int``; most are

    def build_parser():
        p = tool_parser("count", "Count ...", EXAMPLES)
        ...
        return p

    def main(argv=None):
        return tool_main(build_parser(), _run, argv)

and :data:`TOOLS` names it, so ``tracewatch COMMAND`` (cli.py), the docs test
and the smoke test (tests/tools/test_tools_smoke.py) find it.  Misuse found
after parsing (options that conflict, values that do not parse) is a
:class:`~tracewatch.errors.UsageError`; argparse's own errors keep argparse's
message and status (2).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from ..errors import TracewatchError

__all__ = ["TOOLS", "run_tool", "split_double_dash", "tool_parser", "tool_main"]

#: sub-command -> (module under tracewatch.tools, one-line summary); ``tracewatch`` lists them in this order
TOOLS: dict[str, tuple[str, str]] = {
    "report": ("report", "print the events of a trace.dat file (like trace-cmd report)"),
    "run": ("run", "run a Python script over a trace.dat file or the live kernel"),
    "record": ("record", "record live events to a trace.dat file"),
    "flight": ("flight", "hold the newest events in memory, dump them when a trigger fires"),
    "status": ("status", "show a running flight recorder's status file"),
    "list": ("list_events", "list the kernel's trace events and their fields"),
    "cleanup": ("cleanup", "remove tracefs instances and probes left by killed runs"),
    "funccount": ("funccount", "count calls of user functions (uprobes), like bcc's funccount"),
    "funclatency": ("funclatency", "log2 histogram of user function latency, like bcc's funclatency"),
    "calls": ("calls", "indented call tree of user functions per thread, with durations"),
}


def run_tool(body: Callable[[], int | None], prog: str = "tracewatch") -> int:
    """Run a tool's body with tracewatch's error policy.

    TracewatchError: one line (plus an optional hint) on stderr, status 2.
    Ctrl-C: status 130, no traceback.  A closed stdout (``| head``): quiet.
    """
    try:
        return int(body() or 0)
    except TracewatchError as e:
        sys.stdout.flush() if not sys.stdout.closed else None
        print(f"{prog}: error: {e}", file=sys.stderr)
        if getattr(e, "hint", None):
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); stop quietly like other Unix tools
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            return 0


def split_double_dash(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: (tracewatch's options, what follows)."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def tool_parser(command: str, description: str, examples: str) -> argparse.ArgumentParser:
    """The parser of ``tracewatch COMMAND``: ``examples`` (starting ``examples:``) ends its --help."""
    return argparse.ArgumentParser(prog=f"tracewatch {command}", description=description, epilog=examples,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def tool_main(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
              argv: Sequence[str] | None, *, command: bool = False) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run ``body(args)`` under :func:`run_tool`.

    ``command=True``: the words after the first ``--`` are not parsed; they
    become ``args.command`` (a list, empty without ``--``): the command to
    trace, or a script's arguments.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if command:
        argv, rest = split_double_dash(argv)
    args = parser.parse_args(argv)
    if command:
        args.command = rest
    return run_tool(lambda: body(args), prog="tracewatch")
