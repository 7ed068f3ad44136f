"""The options of every live command (run, record, flight) and the LiveSession made from them.

``-e/-p/-d/--buffer-size/--clock/--subbuf-size/--mmap/-P/--no-self-filter``
mean the same in every command because they are added here once
(:func:`add_live_options`) and read here once (:func:`open_live_session`);
``-p`` lists are parsed by :func:`parse_pids`, which the function tools use too.
The exit status of a live run that ended by a signal or with its command's
failure is :func:`live_exit_status`'s.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Callable, Sequence

from ..errors import UsageError

__all__ = ["add_live_options", "parse_pids", "open_live_session", "live_exit_status", "command_exit_status", "exit_status_of",
           "interrupted_status"]


def add_live_options(p: argparse.ArgumentParser) -> None:
    """The options every live command shares (run, record, flight)."""
    g = p.add_argument_group("live tracing")
    g.add_argument("-e", "--event", dest="events", action="append", default=[], metavar="EVENT",
                   help="enable this event too (globs: 'sched:*', 'syscalls:sys_enter_open*'); repeatable")
    g.add_argument("-p", "--pid", dest="pids", action="append", default=[], metavar="PID",
                   help="trace only these pids (comma list or repeat) and their children")
    g.add_argument("-d", "--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (as Ctrl-C does: events not handled by then are "
                        "counted as dropped at stop)")
    # no default here: LiveSession's is the one every live run gets (the function tools' too)
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


def parse_pids(values: Sequence[str]) -> list[int]:
    """The pids of ``-p`` options, each a pid or a comma list (``-p 12 -p 34,56``)."""
    out = []
    for v in values:
        for part in str(v).split(","):
            if part.strip():
                try:
                    out.append(int(part))
                except ValueError:
                    raise UsageError(f"-p: not a pid: {part!r}") from None
    return out


def open_live_session(args: argparse.Namespace, events: list[str], *, optional_events: Sequence[str] = (),
                      kernel_filter: Any = None, command: list[str] | None = None, setup: Any = None,
                      handlers: Any = None):
    """A LiveSession from the options of :func:`add_live_options`.

    ``-P`` specs and the probes ``handlers`` (a script's) asked for are installed
    before events are enabled, and its ``probe:`` handlers bound to them.
    """
    from ..sources.session import LiveSession

    pids = parse_pids(args.pids)
    if getattr(args, "probes", None) or (handlers is not None and (handlers.probes or any(
            h.pattern.startswith("probe:") for h in handlers.events))):
        from ..script.probes import probe_setup

        setup = probe_setup(list(getattr(args, "probes", None) or []), handlers, pid=pids[0] if pids else None,
                            command=command, then=setup)

    return LiveSession(events, optional_events=optional_events, kernel_filter=kernel_filter,
                       pids=pids, command=command or None, duration=args.duration,
                       buffer_kb=args.buffer_size, clock=args.clock, subbuf_kb=args.subbuf_size,
                       mmap=True if args.mmap else False, setup=setup, exclude_self=args.exclude_self)


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
    if session.interrupted_by is not None:  # a second signal (its exception may have been swallowed)
        return 128 + session.interrupted_by
    if session.stop_signal in (signal.SIGTERM, signal.SIGHUP):
        return 128 + session.stop_signal
    return command_exit_status(session, command)


def command_exit_status(session, command: list[str] | None) -> int:
    """The traced command's exit status when it ran to its own end and failed (as ``time`` and
    ``perf stat`` report it: 128 + N when a signal killed it), with a line saying so; else 0.
    record and flight, which handle their own signals, take only this part."""
    if not command or session.command_status is None or session.command_ended:
        return 0
    status = exit_status_of(session.command_status)
    if status:
        how = (f"was killed by {_signal_name(-session.command_status)}" if session.command_status < 0
               else f"exited with status {session.command_status}")
        print(f"tracewatch: the command {how}", file=sys.stderr)
    return status


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def interrupted_status(body: Callable[..., int], *args: Any) -> int:
    """``body(*args)``, with a second stop signal (the run abandoned, cleanup done) as
    exit status 128 + N: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    try:
        return body(*args)
    except KeyboardInterrupt as e:
        return 128 + getattr(e, "signum", signal.SIGINT)
