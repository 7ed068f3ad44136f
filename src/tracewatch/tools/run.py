"""``tracewatch run``: run a Python script's handlers over a trace.dat file or the live kernel.

The script registers handlers with ``tracewatch``'s decorators (``@on``,
``@on_batch``, ``@every``, ``@at_end``, ...) or is a ``perf script -s`` script
(``sched__sched_switch(...)``, ``trace_end()``), which runs unmodified.  The
same script runs on a file (``-i FILE``) and live (the default): only the
source differs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from ..errors import UsageError
from ._command import tool_main, tool_parser
from ._live import add_live_options, interrupted_status, live_exit_status, open_live_session
from ._recorder_options import add_recorder_options, recorder_kwargs

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch run count.py -i trace.dat   # count.py's handlers over a file
  tracewatch run count.py -i trace.dat -- bash
                                   # with -i, words after -- go to the script
  tracewatch run count.py          # live: the events count.py's handlers name
  tracewatch run count.py -d 10    # live, for 10 seconds
  tracewatch run count.py -p 1234  # live, only pid 1234 and its children
  tracewatch run count.py -- make -j2
                                   # live, trace 'make -j2' from its start
  tracewatch run top.py -e 'sched:*' --filter 'common_pid != 0'
                                   # enable more events; filter them all
  tracewatch run syscall-counts.py -i trace.dat
                                   # a perf script -s script, unmodified
  tracewatch run allocs.py -P 'libc:malloc(size=arg1)' -p 1234
                                   # a uprobe; handlers name it probe:malloc
  tracewatch run stalls.py --keep 64M --out fr
                                   # live; the script's dump() writes fr/*.dat
  tracewatch run stalls.py -i big.dat --keep 8M --out fr
                                   # the same triggers, replayed over a file
"""


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("run", "Run a Python script's event handlers over a trace.dat file\nor the live kernel.",
                    EXAMPLES)
    p.add_argument("script", help="the Python script")
    p.add_argument("-i", "--input", metavar="FILE", help="read this trace.dat file instead of the live kernel")
    p.add_argument("--filter", metavar="EXPR", help="a filter (ftrace syntax) every handler's events must pass")
    p.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                   help="when a handler raises: stop the run (default) or skip the event")
    p.add_argument("--keep-going", action="store_true", help="skip damaged pages of the input file")
    p.add_argument("-a", "--arg", dest="script_args", action="append", default=[], metavar="ARG",
                   help="an argument for the script (repeatable); with -i, the words after -- too")
    add_live_options(p)
    add_recorder_options(p, required=False)
    return p


def _apply_global_filter(handlers: Any, expr: str | None) -> None:
    if not expr:
        return
    for h in handlers.events:
        h.where = f"({h.where}) && ({expr})" if h.where else expr


def _bind_file_probes(args: argparse.Namespace, handlers: Any, source: Any) -> None:
    """``-i``: the script's ``probe:`` handlers take the recording's probe events of those names."""
    from ..script.probes import bind_file_probes
    from ..sources.uprobes import parse_probe_spec

    for spec in args.probes:  # nothing to install in a recording: -P only has to make sense
        parse_probe_spec(spec)
    bind_file_probes(handlers, source.formats.values(), args.input)


def _load(args: argparse.Namespace, script_args: list[str]):
    """The user's script, loaded, with ``--filter`` applied to every handler."""
    from ..script.runner import ScriptRunner

    runner = ScriptRunner(args.script, script_args, on_error=args.on_error)
    _apply_global_filter(runner.handlers, args.filter)
    return runner


def _open_file(args: argparse.Namespace, rest: list[str]):
    """(runner, FileSource) for ``-i FILE``: the words after -- go to the script."""
    from ..sources.file import FileSource

    runner = _load(args, list(args.script_args) + rest)
    source = FileSource(args.input, keep_going=args.keep_going)
    try:
        _bind_file_probes(args, runner.handlers, source)
        # a misspelt event is the live run's error; one the recording left out, a note
        for note in source.check_events(runner.handlers.live_events()[0]):
            print(f"tracewatch: note: {note}", file=sys.stderr)
    except BaseException:
        source.close()
        raise
    return runner, source


def _open_live(args: argparse.Namespace, rest: list[str], *, push_filters: bool):
    """(runner, LiveSession): the script's events and -e, the command after --."""
    runner = _load(args, list(args.script_args))
    required, optional = runner.handlers.live_events()
    session = open_live_session(args, required + list(args.events), optional_events=optional,
                                kernel_filter=runner.handlers.kernel_filter if push_filters else None,
                                command=rest, handlers=runner.handlers)
    return runner, session


def _start_line(args: argparse.Namespace, session, rest: list[str], extra: str = "") -> str:
    """bcc-style start-up line: what is traced, for how long, how to stop."""
    what = ", ".join(session.enabled[:4]) + (f" and {len(session.enabled) - 4} more"
                                             if len(session.enabled) > 4 else "")
    until = f" for {args.duration:g} s" if args.duration else ""
    stop = "until the command exits or Ctrl-C" if rest else "Ctrl-C to end"
    return f"Tracing {what}{until}{extra}... {stop}."


def _run(args: argparse.Namespace) -> int:
    rest = args.command  # with -i, the script's arguments; live, the command to trace
    if bool(args.keep) != bool(args.out):
        raise UsageError("--keep and --out go together (--keep 64M --out DIR)")
    status = 0
    if args.keep:
        d, status = _run_recorded(args, rest)
    elif args.input:
        runner, source = _open_file(args, rest)
        try:
            d = runner.run(source)
        finally:
            source.close()
    else:
        runner, session = _open_live(args, rest, push_filters=True)
        try:
            for note in session.filter_notes:
                print(f"tracewatch: note: {note}", file=sys.stderr)
            print(_start_line(args, session, rest), file=sys.stderr)
            d = runner.run(session)
            print(session.summary(d.dropped_at_stop), file=sys.stderr)
        finally:
            session.close()
        status = live_exit_status(session, rest)
    if d.errors:
        print(f"tracewatch: {d.errors} handler error(s) skipped", file=sys.stderr)
    return status


def _run_recorded(args: argparse.Namespace, rest: list[str]):
    """``--keep SIZE --out DIR``: the script's ``dump()`` writes flight-recorder dumps."""
    from ..recorder import FlightRecorder, ReplaySource

    kw = recorder_kwargs(args)
    if args.input:
        runner, source = _open_file(args, rest)
        try:
            rec = FlightRecorder.for_reader(source.reader, args.keep, args.out, script=args.script, **kw)
            d = runner.run(ReplaySource(source, rec), recorder=rec)
        finally:
            source.close()
        rec.writer.check_written()
        return d, 0
    from ..recorder.daemon import FlightRun, tune_malloc

    tune_malloc()
    # no kernel filter pushdown: the ring must hold every enabled event, not only what handlers want
    runner, session = _open_live(args, rest, push_filters=False)
    try:
        rec = FlightRun.recorder_for(session, args.keep, args.out, script=args.script, **kw)
        run = FlightRun(session, rec, runner=runner, on_error=args.on_error)
        extra = f", keeping the newest {rec.ring.keep_bytes >> 20} MiB for dumps to {args.out}"
        print(_start_line(args, session, rest, extra), file=sys.stderr)
        d = run.run()
        print(session.summary(d.dropped_at_stop), file=sys.stderr)
    finally:
        session.close()
    rec.writer.check_written()
    return d, live_exit_status(session, rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch run``; returns the exit status."""
    return tool_main(build_parser(), lambda args: interrupted_status(_run, args), argv, command=True)
