"""The ``tracewatch`` command: one sub-command per module in ``tracewatch.tools``.

Every tool exposes ``main(argv) -> int`` so tests call it directly.  The
commands are listed in ``tools._command.TOOLS``, and the error policy
(``run_tool``) lives there too: errors a user can act on
(:class:`~tracewatch.errors.TracewatchError`) become one line on stderr and
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from .tools._command import TOOLS, run_tool

__all__ = ["main", "run_tool", "TOOLS"]


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
        from .version import __version__

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
