"""``tracewatch flight``: the flight recorder, for a sporadic problem traced for days.

Keeps the newest ``--keep`` bytes of raw ring-buffer pages in memory (nothing is
written) and, when a trigger fires, dumps them plus the ``--post`` window to a
trace.dat and a JSON sidecar in ``--out``.  Triggers: a script's handlers
calling ``tracewatch.dump()`` (history helpers: ``Window``, ``Sequence``,
``Threshold`` in ``tracewatch.recorder``), or declaratively ``--trigger
'system:event: FILTER'``; and SIGUSR1 at any time.  See docs/flight.md.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from ..errors import CaptureError, UsageError
from ._command import tool_main, tool_parser
from ._live import add_live_options, command_exit_status, open_live_session
from ._recorder_options import add_recorder_options, recorder_kwargs

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch flight -e 'sched:*' -e 'raw_syscalls:*' --keep 64M --out fr \\
      --trigger 'raw_syscalls:sys_exit: ret == -11 && common_pid == 1234'
                            # dump the last 64 MiB when pid 1234 gets EAGAIN
  tracewatch flight -e 'syscalls:sys_exit_newfstatat' --keep 16M --out fr \\
      --trigger 'syscalls:sys_exit_newfstatat: ret < 0' \\
      --count 5 --within 10ms --per common_pid
                            # five failing stats of one pid within 10 ms
  tracewatch flight stalls.py -e 'sched:*' --keep 64M --out fr \\
      --post 2s --cooldown 60s
                            # the script decides (it calls tracewatch.dump())
  tracewatch flight stalls.py --keep 256M --out /var/lib/fr \\
      --max-dumps 20 --daemon
                            # a service: status in /var/lib/fr/status.json
  kill -USR1 PID            # dump now
  kill -HUP PID             # reload the script, keep the ring
  tracewatch status /var/lib/fr   # uptime, events/s, lost, dumps, handler lag
"""


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("flight", "Hold the newest events in memory; dump them to a trace.dat\nwhen a trigger fires.",
                    EXAMPLES)
    p.add_argument("script", nargs="?", help="a script whose handlers call tracewatch.dump()")
    t = p.add_argument_group("declarative triggers (no script)")
    t.add_argument("--trigger", action="append", default=[], metavar="'EVENT: FILTER'",
                   help="dump when an event passes the filter (ftrace syntax); repeatable")
    t.add_argument("--count", type=int, default=1, metavar="N", help="only when N matching events ...")
    t.add_argument("--within", metavar="DUR", help="... happen within DUR (10ms) ...")
    t.add_argument("--per", metavar="FIELD", help="... for one value of FIELD (common_pid)")
    t.add_argument("--reason", metavar="TEXT", help="the reason in the dump's name and sidecar")
    s = p.add_argument_group("service")
    s.add_argument("--daemon", action="store_true",
                   help="run as a service until SIGTERM: status file DIR/status.json by default, "
                        "systemd notify, log lines only")
    s.add_argument("--status-file", metavar="PATH", help="rewrite this JSON status file every few seconds")
    s.add_argument("--status-interval", type=float, default=2.0, metavar="SECONDS",
                   help="how often the status file is rewritten (default 2)")
    s.add_argument("--late", metavar="DUR", default="1s",
                   help="handlers this far behind the newest page count as late (default 1s)")
    s.add_argument("--stop-grace", metavar="DUR", default="5s",
                   help="after SIGTERM/SIGINT, how long a running handler may take before it is abandoned, "
                        "the tracing instance removed and the recorder exits with status 2 (default 5s)")
    p.add_argument("-a", "--arg", dest="script_args", action="append", default=[], metavar="ARG",
                   help="an argument for the script (repeatable)")
    p.add_argument("--on-error", choices=("stop", "skip"), default="skip",
                   help="when a handler raises: skip the event (default: a recorder keeps running) or stop")
    add_recorder_options(p, required=True)
    add_live_options(p)
    return p


def _declarative(args: argparse.Namespace, session_available: list[str]):
    from ..recorder.daemon import DeclarativeTrigger, parse_trigger

    triggers = []
    for spec in args.trigger:
        event, where = parse_trigger(spec, session_available)
        triggers.append(DeclarativeTrigger(event, where, reason=args.reason, count=args.count,
                                           within=args.within, per=args.per))
    return triggers


def _run(args: argparse.Namespace) -> int:
    from ..recorder.daemon import FlightRun, log_line, tune_malloc
    from ..script.api import ScriptHandlers, parse_duration
    from ..sources.tracefs import TraceFS

    rest = args.command
    kw = recorder_kwargs(args)
    try:
        stop_grace = parse_duration(args.stop_grace) / 1e9
    except ValueError as e:
        raise UsageError(f"--stop-grace: {e}") from None
    tune_malloc()
    if args.script and args.trigger:
        raise UsageError("give a script or --trigger, not both (a script can do what --trigger does)")
    if (args.count > 1 or args.within or args.per) and not args.trigger:
        raise UsageError("--count/--within/--per refine --trigger")
    runner = None
    handlers = ScriptHandlers()
    triggers = []
    if args.script:
        from ..script.runner import ScriptRunner

        runner = ScriptRunner(args.script, list(args.script_args), on_error=args.on_error)
        required, optional = runner.handlers.live_events()
    else:
        try:
            available = TraceFS().available_events()
        except CaptureError:
            raise
        triggers = _declarative(args, available)
        handlers = ScriptHandlers(events=[t.handler() for t in triggers])
        required, optional = [t.event for t in triggers], []
    events = list(dict.fromkeys(required + list(args.events)))
    if not events and not optional:
        raise UsageError("no events to record: name some with -e (e.g. -e 'sched:*')")
    status_path = args.status_file or (os.path.join(args.out, "status.json") if args.daemon else None)
    # no kernel filter pushdown: the ring must hold every enabled event, not only the triggers'
    session = open_live_session(args, events, optional_events=optional, command=rest)
    try:
        for note in session.filter_notes:
            log_line(f"note: {note}")
        rec = FlightRun.recorder_for(session, args.keep, args.out, late=args.late,
                                     script=os.path.abspath(args.script) if args.script else
                                     "; ".join(args.trigger) or None, **kw)
        run = FlightRun(session, rec, script=args.script, script_args=args.script_args, runner=runner,
                        handlers=handlers, on_error=args.on_error, status_path=status_path,
                        status_interval=args.status_interval, triggers_spec=args.trigger,
                        stop_grace=stop_grace)
        what = ", ".join(session.enabled[:4]) + (f" and {len(session.enabled) - 4} more"
                                                 if len(session.enabled) > 4 else "")
        on = args.script or (" or ".join(args.trigger) if args.trigger else "SIGUSR1 only")
        stop = "until the command exits or SIGTERM" if rest else ("SIGTERM to end" if args.daemon else
                                                                 "Ctrl-C to end")
        log_line(f"recording {what} into a {rec.ring.keep_bytes >> 20} MiB ring; dumps to {args.out} on {on}; "
                 f"SIGUSR1 dumps now, SIGHUP reloads; {stop}")
        d = run.run()
        log_line(f"stopped: {rec.writer.summary()}; {session.summary().splitlines()[0]}")
        if d.dropped_at_stop:
            log_line(f"{d.dropped_at_stop} events dropped at stop: read, but the run stopped before "
                     "the handlers were given them")
        if triggers:
            for t in triggers:
                log_line(f"trigger {t.reason!r}: {t.matched} matching event(s), fired {t.fired} time(s)")
    finally:
        session.close()
    rec.writer.check_written()
    return command_exit_status(session, rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch flight``; returns the exit status."""
    return tool_main(build_parser(), _run, argv, command=True)
