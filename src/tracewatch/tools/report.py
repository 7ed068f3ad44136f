"""``tracewatch report``: print the events of a trace.dat file, like ``trace-cmd report``.

The text of every line is what ``trace-cmd report`` prints (``--raw``: what
``trace-cmd report -R`` prints), so existing eyes, scripts and diffs keep
working; ``--json`` prints one JSON object per event for other languages.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from typing import Iterator, Sequence

import numpy as np

from ..errors import TraceFormatError, UsageError
from ..export.tracedat_report import json_lines, lost_summary, report_chunks, write_chunks, write_lines
from ..formats.event_format import EventFormat
from ..formats import tracedat
from ..formats.tracedat import MergedIndex
from ..sources.file import check_event_patterns, open_reader, short_records
from ..sources.tracefs import parse_cpu_list
from ._command import tool_main, tool_parser

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch report trace.dat           # every event, as trace-cmd report does
  tracewatch report --raw trace.dat     # field=value (trace-cmd report -R)
  tracewatch report --cpu 1 trace.dat   # only CPU 1
  tracewatch report --events 'sched:*' trace.dat
                                        # only the sched events (globs, commas)
  tracewatch report --json trace.dat | jq .   # one JSON object per event
  tracewatch report --keep-going bad.dat      # skip damaged pages, go on
  zstdcat trace.dat.zst | tracewatch report - # standard input (any pipe)
"""


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("report", "Print the events of a trace-cmd trace.dat file in time order.", EXAMPLES)
    p.add_argument("file", nargs="?", help="trace.dat file, '-' for standard input (default: trace.dat)")
    p.add_argument("-i", dest="input", metavar="FILE", help="trace.dat file (as trace-cmd report -i; '-': stdin)")
    p.add_argument("-R", "--raw", action="store_true", help="print fields as field=value (trace-cmd report -R)")
    p.add_argument("--cpu", action="append", metavar="N", help="only these CPUs (repeat or comma list)")
    p.add_argument("--events", "-e", action="append", metavar="GLOB",
                   help="only these events: 'sched:*', 'sys_enter', comma lists")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.add_argument("--keep-going", action="store_true", help="skip damaged pages and go on")
    p.add_argument("--stat", action="store_true", help="print events and lost events per CPU at the end (stderr)")
    return p


def _cpus(values: list[str] | None) -> set[int] | None:
    """The CPUs of ``--cpu`` options (each a cpulist: ``1``, ``0-3,5``); None: every CPU."""
    if not values:
        return None
    out: set[int] = set()
    for v in values:
        try:
            out.update(parse_cpu_list(v))
        except ValueError:
            raise UsageError(f"--cpu: not a CPU list: {v!r} (e.g. 1, 0-3,5)") from None
    return out


def event_globs(values: list[str] | None) -> list[str]:
    """The globs of ``--events`` options (each a comma list)."""
    return [g.strip() for v in values or () for g in v.split(",") if g.strip()]


def event_matcher(globs: list[str] | None):
    """A predicate on EventFormat for ``--events`` globs (``sched:*``, ``sys_enter``, ``*:*open*``)."""
    if not globs:
        return None
    pats = event_globs(globs)

    def match(fmt: EventFormat) -> bool:
        full = f"{fmt.system}:{fmt.name}"
        for pat in pats:
            pat = pat.replace("/", ":")
            if ":" in pat:
                if fnmatch.fnmatchcase(full, pat):
                    return True
            elif fnmatch.fnmatchcase(fmt.name, pat) or fnmatch.fnmatchcase(fmt.system, pat):
                return True
        return False

    return match


def select(index: MergedIndex, formats: dict[int, EventFormat], cpus: set[int] | None, match) -> MergedIndex:
    """The events of ``index`` on ``cpus`` whose event type ``match`` accepts."""
    keep = np.ones(len(index), dtype=bool)
    if cpus is not None:
        keep &= np.isin(index.cpu, np.array(sorted(cpus), dtype=np.int32))
    if match is not None:
        ok_ids = np.array([i for i, f in formats.items() if match(f)], dtype=np.int64)
        keep &= np.isin(index.type_id.astype(np.int64), ok_ids)
    if keep.all():
        return index
    sel = np.flatnonzero(keep)
    out = index.take(sel)
    # lost-event marks belong to the first event shown after them on that CPU
    return out


#: files with more bytes of event pages are merged a window of pages at a time (memory bounded),
#: of WINDOW_PAGES pages per CPU; either way printed in parts of PART_EVENTS events
WHOLE_MERGE_BYTES = tracedat.WHOLE_MERGE_BYTES
WINDOW_PAGES = 1024
PART_EVENTS = 1 << 20


def _report(args: argparse.Namespace) -> int:
    path = args.input or args.file or "trace.dat"
    reader = open_reader(path)
    cpus, match = _cpus(args.cpu), event_matcher(args.events)
    if cpus is not None and max(cpus) >= reader.cpus:  # else an empty report that looks like an idle CPU
        raise UsageError(f"--cpu {max(cpus)}: {path} has CPUs 0-{reader.cpus - 1}")
    # a misspelt --events glob is an error, as in a live run; one the recording left out, a note
    for note in check_event_patterns(path, event_globs(args.events), reader.formats):
        print(f"tracewatch: note: {note}", file=sys.stderr)
    shown = np.zeros(max(reader.cpus, 1), np.int64)
    damage: list[TraceFormatError] = []
    error: TraceFormatError | None = None

    def parts() -> Iterator[MergedIndex]:
        """The events to print, in order, in parts; ``error``/``damage`` set on the way."""
        nonlocal error, damage
        pieces = reader.merged_parts(PART_EVENTS, keep_going=args.keep_going, window_pages=WINDOW_PAGES,
                                     whole_bytes=WHOLE_MERGE_BYTES)
        try:
            while True:
                try:
                    part = next(pieces)
                except StopIteration as end:  # the merge returns its damage list
                    damage = end.value or []
                    return
                damage = part.damage
                short = short_records(path, reader.formats, part.type_id, part.length, part.cpu)
                if short is not None:  # the events before the first, then its error
                    part = part.take(slice(0, short[0]))
                part = select(part, reader.formats, cpus, match)
                if len(part):
                    shown[: reader.cpus] += np.bincount(part.cpu, minlength=reader.cpus)[: reader.cpus]
                    yield part
                if short is not None:
                    raise short[1]
        except TraceFormatError as e:
            if getattr(e, "damage", None) is None:
                raise
            error, damage = e, e.damage  # type: ignore[attr-defined]

    out = sys.stdout.buffer
    sys.stdout.flush()
    if args.json:
        write_lines(json_lines(reader, parts()), out)
    else:
        out.write(f"cpus={reader.cpus}\n".encode())
        write_chunks(report_chunks(reader, parts(), raw=args.raw), out)
    out.flush()
    lost = reader.lost_events()
    any_lost = any(le.pages_with_loss for le in lost.values())
    if args.stat or any_lost:
        print(lost_summary(reader, shown[: reader.cpus]), file=sys.stderr)
    if args.keep_going and damage:
        for d in damage:
            print(f"tracewatch: warning: skipped damaged data: {d}", file=sys.stderr)
    if error is not None:
        error.hint = error.hint or "the file may be truncated or damaged; --keep-going skips damaged pages"
        raise error
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch report``; returns the exit status."""
    return tool_main(build_parser(), _report, argv)
