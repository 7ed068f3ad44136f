"""What funccount, funclatency and calls share: options, probes, the event source.

Each tool takes function specs (``libc:malloc``, ``./prog:work_*``), a target
(``-p PID`` or ``-- COMMAND``), ``-d SECONDS``, or ``-i FILE`` to read the
probe events of a recorded trace.dat instead of the live kernel.  Live, the
specs become uprobes in a private instance (:mod:`tracewatch.sources.uprobes`);
from a file, they select the file's uprobe events by function name.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from ..errors import CaptureError, UsageError
from ..formats.event_format import EventFormat
from ..sources.uprobes import (
    DEFAULT_MAX_PROBES,
    ProbeSet,
    ProbeSpec,
    event_name_for,
    function_of_event,
    parse_probe_spec,
    process_threads,
)
from ._command import tool_main
from ._live import parse_pids

__all__ = ["add_common_options", "functrace_main", "FuncTrace", "open_functrace", "start_line", "print_notes"]


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pid", metavar="PID", help="trace this process (all its threads)")
    p.add_argument("-d", "--duration", type=float, metavar="SECONDS", help="trace for this long, then report")
    p.add_argument("-i", "--input", metavar="FILE",
                   help="read the probe events of a recorded trace.dat instead of tracing live")
    p.add_argument("--max-probes", type=int, default=DEFAULT_MAX_PROBES, metavar="N",
                   help=f"refuse patterns that need more probes than this (default {DEFAULT_MAX_PROBES})")


def functrace_main(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
                   argv: Sequence[str] | None) -> int:
    """``main`` of a function tool: what follows ``--`` is the command to trace (``args.command``)."""

    def checked(args: argparse.Namespace) -> int | None:
        if args.pid is not None:
            pids = parse_pids([args.pid])
            if len(pids) != 1:
                raise UsageError(f"-p {args.pid}: give one process (its threads are traced too)")
            args.pid = pids[0]
        if args.command and args.pid is not None:
            raise UsageError("give -p PID or -- COMMAND, not both")
        if args.input and args.command:
            raise UsageError("-i FILE reads a recording; it cannot run a command")
        return body(args)

    return tool_main(parser, checked, argv, command=True)


@dataclass
class FuncTrace:
    """An opened source and what its probe events mean.

    ``targets`` maps an event type id to ``(function index, is_entry)``;
    ``functions`` lists the function names the indexes refer to.
    """

    source: Any  # LiveSession or FileSource
    functions: list[str]
    targets: dict[int, tuple[int, bool]]
    description: str
    live: bool
    tid_filter: int | None = None  # file mode with -p: only this thread id
    entry_types: set[int] = field(default_factory=set)
    return_types: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.entry_types = {t for t, (_, e) in self.targets.items() if e}
        self.return_types = {t for t, (_, e) in self.targets.items() if not e}

    def wants(self, fmt: EventFormat) -> bool:
        return fmt.id in self.targets

    def chunks(self) -> Iterator[Any]:
        return self.source.chunks()

    def lost_events(self) -> int:
        lost = self.source.lost_events()
        return sum(max(v, 0) for v in lost.values()) if isinstance(lost, dict) else int(lost)

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "FuncTrace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _probe_kind(fmt: EventFormat) -> bool | None:
    """True for a uprobe/kprobe entry event, False for a return event, None otherwise."""
    names = {f.name for f in fmt.fields}
    if "__probe_func" in names and "__probe_ret_ip" in names:
        return False
    if "__probe_ip" in names:
        return True
    return None


def open_functrace(args: argparse.Namespace, specs: Sequence[str], *, both: bool) -> FuncTrace:
    """Open the live kernel (probes installed) or ``args.input`` for the given specs."""
    parsed = [parse_probe_spec(s) for s in specs]
    if args.input:
        return _open_file(args, parsed)
    return _open_live(args, parsed, both=both)


def _open_live(args: argparse.Namespace, parsed: list[ProbeSpec], *, both: bool) -> FuncTrace:
    from ..sources.session import LiveSession

    program = None
    if args.command:
        program = shutil.which(args.command[0]) or args.command[0]
        if not os.path.exists(program):
            raise CaptureError(f"cannot run {args.command[0]!r}: no such program")
    if args.pid is not None and not os.path.exists(f"/proc/{args.pid}"):
        raise CaptureError(f"no process {args.pid}")
    probes = ProbeSet.from_specs(parsed, pid=args.pid, program=program, max_probes=args.max_probes, both=both)
    pids = process_threads(args.pid) if args.pid is not None else None
    # no buffer size: LiveSession's default, the one `run` uses too (the kernel's ~1.4 MB per CPU
    # loses events of busy functions)
    session = LiveSession([], pids=pids, command=args.command or None, duration=args.duration, setup=probes.install)
    try:
        functions = probes.functions
        index = {f: i for i, f in enumerate(functions)}
        targets: dict[int, tuple[int, bool]] = {}
        for tid, fmt in session.formats.items():
            p = probes.probe_for(fmt.system, fmt.name)
            if p is not None:
                targets[tid] = (index[p.function], p.kind == "p")
    except BaseException:
        session.close()
        raise
    return FuncTrace(session, functions, targets, probes.describe(), True)


def _open_file(args: argparse.Namespace, parsed: list[ProbeSpec]) -> FuncTrace:
    from ..sources.file import FileSource

    source = FileSource(args.input)
    try:
        probe_events: list[tuple[EventFormat, str, bool]] = []
        for fmt in source.formats.values():
            kind = _probe_kind(fmt)
            if kind is None:
                continue
            func, k = function_of_event(fmt.name)
            probe_events.append((fmt, func, kind if k == "p" else False))
        if not probe_events:
            raise CaptureError(f"{args.input}: no uprobe events in this recording")
        functions: list[str] = []
        targets: dict[int, tuple[int, bool]] = {}
        for fmt, func, is_entry in sorted(probe_events, key=lambda x: (x[1], x[0].system, not x[2])):
            if not any(_spec_matches(s, func) for s in parsed):
                continue
            if func not in functions:
                functions.append(func)
            targets[fmt.id] = (functions.index(func), is_entry)
        if not targets:
            have = sorted({func for _, func, _ in probe_events})
            shown = ", ".join(have[:8]) + (", ..." if len(have) > 8 else "")
            raise CaptureError(f"{args.input}: no probe events for {', '.join(s.text for s in parsed)} "
                               f"(the recording has probes on: {shown})")
    except BaseException:
        source.close()
        raise
    n = len(functions)
    return FuncTrace(source, functions, targets, f"{n} function{'s' if n != 1 else ''} in {args.input}", False,
                     tid_filter=args.pid)


def _spec_matches(spec: ProbeSpec, func: str) -> bool:
    """Whether a file's probe event for ``func`` (an event name) is what ``spec`` asks for."""
    pattern = spec.function.split("@", 1)[0]
    return fnmatch.fnmatchcase(func, pattern) or fnmatch.fnmatchcase(func, event_name_for(pattern)) \
        or re.sub(r"_\d+$", "", func) == event_name_for(pattern)  # a name made unique: malloc_2


def start_line(ft: FuncTrace, specs: Sequence[str], what: str = "Tracing") -> str:
    """bcc's start-up line: what is traced and how to stop."""
    quoted = ", ".join(f'"{s}"' for s in specs)
    if not ft.live:
        return f"Reading {ft.description} for {quoted}..."
    stop = f"for {ft.source.duration:g} s" if getattr(ft.source, "duration", None) else "Hit Ctrl-C to end"
    return f"{what} {ft.description} for {quoted}... {stop}."


def print_notes(counts: Sequence[tuple[int, str]]) -> None:
    """One stderr line for what made the result incomplete: ``counts`` are (n, "what"), zeros left out."""
    notes = [f"{n} {what}" for n, what in counts if n]
    if notes:
        print("tracewatch: " + "; ".join(notes), file=sys.stderr)
