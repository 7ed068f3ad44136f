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

from ..cli import run_tool
from ..errors import CaptureError

__all__ = ["main", "build_parser", "split_double_dash", "add_live_options", "open_live_session",
           "live_exit_status", "exit_status_of"]

EXAMPLES = """\
examples:
  tracewatch run count.py -i trace.dat              # run count.py's handlers over a file
  tracewatch run count.py -i trace.dat -- bash      # with -i, words after -- go to the script
  tracewatch run count.py                           # live: the events count.py's handlers name
  tracewatch run count.py -d 10                     # live, for 10 seconds
  tracewatch run count.py -p 1234                   # live, only pid 1234 and its children
  tracewatch run count.py -- make -j2               # live, trace 'make -j2' from its start
  tracewatch run top.py -e 'sched:*' --filter 'common_pid != 0'
                                                    # enable more events; filter all of them
  tracewatch run syscall-counts.py -i trace.dat     # a perf script -s script, unmodified
  tracewatch run allocs.py -P 'libc:malloc(size=arg1)' -p 1234
                                                    # add a uprobe; handlers name it "probe:malloc"
  tracewatch run stalls.py --keep 64M --out fr      # live; the script's dump() writes fr/*.dat
  tracewatch run stalls.py -i big.dat --keep 8M --out fr
                                                    # the same triggers replayed over a file
"""


def add_live_options(p: argparse.ArgumentParser) -> None:
    """The options every live command shares (run, record, flight, function tools)."""
    g = p.add_argument_group("live tracing")
    g.add_argument("-e", "--event", dest="events", action="append", default=[], metavar="EVENT",
                   help="enable this event too (globs: 'sched:*', 'syscalls:sys_enter_open*'); repeatable")
    g.add_argument("-p", "--pid", dest="pids", action="append", default=[], metavar="PID",
                   help="trace only these pids (comma list or repeat) and their children")
    g.add_argument("-d", "--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (as Ctrl-C does: events not handled by then are "
                        "counted as dropped at stop)")
    buffer = g.add_argument("--buffer-size", type=int, metavar="KB", default=None,
                            help="per-CPU ring buffer size in KB (default %(session_default)s: bursts "
                                 "of a few million events/s for a second are absorbed)")
    buffer.session_default = _SessionBufferDefault()  # type: ignore[attr-defined]
    g.add_argument("--clock", metavar="CLOCK", help="trace clock (local, global, mono, ...)")
    g.add_argument("--subbuf-size", type=int, metavar="KB", help="ring-buffer sub-buffer (page) size in KB")
    g.add_argument("--mmap", action="store_true",
                   help="take pages through the mmapped ring buffer (Linux 6.10+) instead of read(); "
                        "read() measured faster on this kind of machine")
    g.add_argument("-P", "--probe", dest="probes", action="append", default=[], metavar="SPEC",
                   help="add a function probe (uprobe), e.g. 'libc:malloc(size=arg1)', "
                        "'r:libc:malloc ret=$retval:x64', './prog:work_*'; its events are probe:NAME; repeatable")
    # not trace-cmd's --no-filter: here --filter is an event filter expression
    g.add_argument("--no-self-filter", dest="exclude_self", action="store_false",
                   help="trace tracewatch's own threads too (by default they are left out, "
                        "so that its reads of the ring buffers do not show up as syscalls)")


class _SessionBufferDefault:
    """``LiveSession.DEFAULT_BUFFER_KB`` for --help, looked up only when help is printed
    (argparse formats ``%(name)s`` from the action's attributes): importing the
    session loads numba, which parsing the options must not pay for."""

    def __str__(self) -> str:
        from ..sources.session import LiveSession

        return str(LiveSession.DEFAULT_BUFFER_KB)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracewatch run",
        description="Run a Python script's event handlers over a trace.dat file or the live kernel.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("script", help="the Python script")
    p.add_argument("-i", "--input", metavar="FILE", help="read this trace.dat file instead of the live kernel")
    p.add_argument("--filter", metavar="EXPR", help="a filter (ftrace syntax) every handler's events must pass")
    p.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                   help="when a handler raises: stop the run (default) or skip the event")
    p.add_argument("--keep-going", action="store_true", help="skip damaged pages of the input file")
    p.add_argument("-a", "--arg", dest="script_args", action="append", default=[], metavar="ARG",
                   help="an argument for the script (repeatable); with -i, the words after -- too")
    add_live_options(p)
    from .flight import add_recorder_options

    add_recorder_options(p, required=False)
    return p


def split_double_dash(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: (tracewatch's options, what follows)."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def parse_pids(values: list[str]) -> list[int]:
    out = []
    for v in values:
        for part in str(v).split(","):
            if part.strip():
                try:
                    out.append(int(part))
                except ValueError:
                    raise CaptureError(f"-p: not a pid: {part!r}") from None
    return out


def open_live_session(args: argparse.Namespace, events: list[str], *, optional_events: Sequence[str] = (),
                      kernel_filter: Any = None, command: list[str] | None = None, setup: Any = None,
                      handlers: Any = None):
    """A LiveSession from the shared live options.

    ``-P`` specs and the probes ``handlers`` (a script's) asked for are installed
    before events are enabled, and its ``probe:`` handlers bound to them.
    """
    from ..sources.session import LiveSession

    if getattr(args, "probes", None) or (handlers is not None and (handlers.probes or any(
            h.pattern.startswith("probe:") for h in handlers.events))):
        from ..script.probes import probe_setup

        pids = parse_pids(args.pids)
        setup = probe_setup(list(getattr(args, "probes", None) or []), handlers, pid=pids[0] if pids else None,
                            command=command, then=setup)

    return LiveSession(events, optional_events=optional_events, kernel_filter=kernel_filter,
                       pids=parse_pids(args.pids), command=command or None, duration=args.duration,
                       buffer_kb=args.buffer_size, clock=args.clock, subbuf_kb=args.subbuf_size,
                       mmap=True if args.mmap else False, setup=setup, exclude_self=args.exclude_self)


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


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    if bool(args.keep) != bool(args.out):
        raise CaptureError("--keep and --out go together (--keep 64M --out DIR)")
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


def exit_status_of(returncode: int) -> int:
    """A child's ``returncode`` as a shell reports it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def live_exit_status(session, command: list[str] | None) -> int:
    """The exit status of a live command that ran to its end (run, record, flight).

    A second signal: 128 + N.  A signal that stopped the run: 128 + N for SIGTERM and SIGHUP, as if it had
    killed us (the end hooks and the summary ran first); 0 for SIGINT, the
    usual way to end a system-wide run.  Else the command's status when it
    ran to its own end and failed (as ``time`` and ``perf stat`` report it),
    with a line saying so; 0 when the session ended it (duration, Ctrl-C).
    """
    import signal

    if session.interrupted_by is not None:  # a second signal (its exception may have been swallowed)
        return 128 + session.interrupted_by
    if session.stop_signal in (signal.SIGTERM, signal.SIGHUP):
        return 128 + session.stop_signal
    if not command or session.command_status is None or session.command_ended:
        return 0
    status = exit_status_of(session.command_status)
    if status:
        how = (f"was killed by {_signal_name(-session.command_status)}" if session.command_status < 0
               else f"exited with status {session.command_status}")
        print(f"tracewatch: the command {how}", file=sys.stderr)
    return status


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _run_recorded(args: argparse.Namespace, rest: list[str]):
    """``--keep SIZE --out DIR``: the script's ``dump()`` writes flight-recorder dumps."""
    from ..recorder import FlightRecorder, ReplaySource
    from .flight import recorder_kwargs

    kw = recorder_kwargs(args)
    if args.input:
        runner, source = _open_file(args, rest)
        try:
            rec = FlightRecorder.for_reader(source.reader, args.keep, args.out, script=args.script, **kw)
            return runner.run(ReplaySource(source, rec), recorder=rec), 0
        finally:
            source.close()
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
    return d, live_exit_status(session, rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch run``; returns the exit status."""
    own, rest = split_double_dash(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    return run_tool(lambda: interrupted_status(_run, args, rest), prog="tracewatch")


def interrupted_status(body, *args: Any) -> int:
    """``body(*args)``, with a second stop signal (the run abandoned, cleanup done) as
    exit status 128 + N: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    import signal

    try:
        return body(*args)
    except KeyboardInterrupt as e:
        return 128 + getattr(e, "signum", signal.SIGINT)
