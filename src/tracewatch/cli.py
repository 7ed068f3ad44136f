"""The ``tracewatch`` command: one sub-command per module in ``tracewatch.tools``.

Every tool exposes ``main(argv) -> int`` so tests call it directly.  Errors a
user can act on (:class:`~tracewatch.errors.TracewatchError`) become one line
on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

from .errors import TracewatchError

__all__ = ["main", "run_tool", "TOOLS"]

#: sub-command -> (module under tracewatch.tools, one-line summary)
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


def _usage() -> str:
    width = max(len(k) for k in TOOLS)
    lines = ["usage: tracewatch COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {k:<{width}}  {v[1]}" for k, v in TOOLS.items()]
    lines += ["", "Run 'tracewatch COMMAND --help' for a command's options and examples."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from . import __version__

        print(f"tracewatch {__version__}")
        return 0
    cmd = args[0]
    if cmd not in TOOLS:
        import difflib

        close = difflib.get_close_matches(cmd, TOOLS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"tracewatch: error: unknown command '{cmd}'{hint}", file=sys.stderr)
        return 2
    module = importlib.import_module(f".tools.{TOOLS[cmd][0]}", __package__)
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
