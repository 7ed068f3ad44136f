"""The options of every live command (run, record, flight) and the LiveSession made from them.

``-e/-p/-d/--buffer-size/--clock/--subbuf-size/--mmap/-P/--no-self-filter``
mean the same in every command because they are added here once
(:func:`add_live_options`) and read here once (:func:`open_live_session`);
``-p`` lists are parsed by :func:`parse_pids`, which the function tools use too.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from ..errors import UsageError

__all__ = ["add_live_options", "parse_pids", "open_live_session", "DEFAULT_BUFFER_KB"]

#: per-CPU ring buffer of a live session; the kernel's default (~1.4 MB) overflows within
#: milliseconds when syscalls are traced on a busy machine
DEFAULT_BUFFER_KB = 16384


def add_live_options(p: argparse.ArgumentParser) -> None:
    """The options every live command shares (run, record, flight)."""
    g = p.add_argument_group("live tracing")
    g.add_argument("-e", "--event", dest="events", action="append", default=[], metavar="EVENT",
                   help="enable this event too (globs: 'sched:*', 'syscalls:sys_enter_open*'); repeatable")
    g.add_argument("-p", "--pid", dest="pids", action="append", default=[], metavar="PID",
                   help="trace only these pids (comma list or repeat) and their children")
    g.add_argument("-d", "--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    g.add_argument("--buffer-size", type=int, metavar="KB", default=DEFAULT_BUFFER_KB,
                   help=f"per-CPU ring buffer size in KB (default {DEFAULT_BUFFER_KB}: bursts of a few "
                        "million events/s for a second are absorbed)")
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
