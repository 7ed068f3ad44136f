"""The flight recorder's options: ``tracewatch flight`` and ``tracewatch run --keep --out`` share them.

:func:`add_recorder_options` adds them to a parser, :func:`recorder_kwargs`
checks them (a misspelt size or a DIR that cannot be written is said before
any tracing starts) and turns them into FlightRecorder keyword arguments.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError

__all__ = ["add_recorder_options", "recorder_kwargs", "parse_mode",
           "DEFAULT_COOLDOWN", "DEFAULT_DUMP_LIMIT", "DEFAULT_DUMP_LIMIT_BYTES"]

#: Defaults of the dump policy: the help example once wrote 78 dumps (28 MB) in 4 s without them.
DEFAULT_COOLDOWN = "60s"
DEFAULT_DUMP_LIMIT = 100
DEFAULT_DUMP_LIMIT_BYTES = "2G"


def add_recorder_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    """``--keep/--out/--post/--before/--max-dumps/--cooldown/--min-free`` (flight; run with --keep)."""
    g = p.add_argument_group("flight recorder")
    g.add_argument("--keep", metavar="SIZE", required=required,
                   help="bytes of the newest events to hold in memory (64M, 1G)" +
                        ("" if required else "; with --out, the script's dump() works"))
    g.add_argument("--out", metavar="DIR", required=required, help="directory of the dumps (.dat + .json)")
    g.add_argument("--post", metavar="DUR", default="0",
                   help="also dump this much after the trigger (500ms, 2s; default 0)")
    g.add_argument("--before", metavar="DUR", help="dump only this much before the trigger (default: all held)")
    g.add_argument("--max-dumps", type=int, metavar="N", help="keep only the newest N dumps in DIR (rotation)")
    g.add_argument("--cooldown", metavar="DUR", default=DEFAULT_COOLDOWN,
                   help=f"count, don't dump, triggers this soon (trace time) after a dump (default "
                        f"{DEFAULT_COOLDOWN}; 0: none)")
    g.add_argument("--dump-limit", type=int, metavar="N", default=DEFAULT_DUMP_LIMIT,
                   help=f"write at most N dumps in this run; later triggers are counted as over the limit "
                        f"(default {DEFAULT_DUMP_LIMIT}; SIGUSR1 still dumps)")
    g.add_argument("--dump-limit-bytes", metavar="SIZE", default=DEFAULT_DUMP_LIMIT_BYTES,
                   help=f"stop dumping once this run wrote SIZE of dumps (default {DEFAULT_DUMP_LIMIT_BYTES})")
    g.add_argument("--mode", metavar="OCTAL", default="0600",
                   help="permissions of dumps, sidecars and the status file (default 0600: they hold kernel "
                        "addresses); DIR, when created, gets the matching directory mode (0700)")
    g.add_argument("--min-free", metavar="SIZE", default="256M",
                   help="stop dumping while DIR's file system has less free (default 256M)")
    g.add_argument("--kallsyms", action="store_true",
                   help="store /proc/kallsyms (about 5 MB) in every dump; without it trace-cmd report "
                        "still opens dumps, but shows kernel addresses (function/stack events) as hex")


def recorder_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """FlightRecorder keyword arguments from :func:`add_recorder_options`' options (validated)."""
    from ..recorder import parse_size
    from ..script.api import parse_duration

    for name in ("post", "before", "cooldown"):
        v = getattr(args, name, None)
        if v is not None:
            try:
                parse_duration(v)
            except ValueError as e:
                raise UsageError(f"--{name}: {e}") from None
    for name in ("keep", "min_free", "dump_limit_bytes"):
        try:
            parse_size(getattr(args, name))
        except ValueError as e:
            raise UsageError(f"--{name.replace('_', '-')}: {e}") from None
    if args.max_dumps is not None and args.max_dumps < 1:
        raise UsageError("--max-dumps must be at least 1")
    if args.dump_limit is not None and args.dump_limit < 1:
        raise UsageError("--dump-limit must be at least 1")
    mode = parse_mode(args.mode)
    if args.out:
        # before any tracing: a FILE or a read-only DIR is said now, not at the first dump; this also
        # removes temporaries a killed run left there
        from ..recorder.dump import DumpDir, _default_log

        out = DumpDir(args.out, mode)
        out.close()
        for path in out.swept or ():
            _default_log(f"removed {path} (a dump cut short by an earlier run)")
    return {"after": args.post, "before": args.before, "max_dumps": args.max_dumps, "cooldown": args.cooldown,
            "min_free_bytes": args.min_free, "kallsyms": bool(getattr(args, "kallsyms", False)),
            "dump_limit": args.dump_limit, "dump_limit_bytes": args.dump_limit_bytes, "file_mode": mode}


def parse_mode(text: str) -> int:
    """``--mode 0640`` -> 0o640: owner read/write at least (the recorder rewrites its files), no
    execute or special bits."""
    try:
        mode = int(text, 8)
    except (TypeError, ValueError):
        raise UsageError(f"--mode {text!r}: not an octal mode (e.g. 0600, 0640)") from None
    if mode & ~0o666 or mode & 0o600 != 0o600:
        raise UsageError(f"--mode {text}: give read/write bits only, with the owner's read and write "
                          "(e.g. 0600, 0640, 0644)")
    return mode
