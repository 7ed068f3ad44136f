"""``tracewatch record``: write live events to a trace.dat file that trace-cmd and KernelShark open.

Pages are copied from the kernel's ring buffers to the file as they are
(no decoding, no re-encoding), so recording costs little more than the copy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..cli import run_tool
from ..errors import CaptureError
from .run import add_live_options, open_live_session, split_double_dash

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch record -e 'sched:*' -o sched.dat -d 5      # 5 seconds of scheduler events
  tracewatch record -e raw_syscalls -o ls.dat -- ls -l  # ls's syscalls, from its start to its end
  tracewatch record -e 'sched:sched_switch' -p 1234 -o x.dat
                                                       # only pid 1234 (and its children)
  tracewatch record -P 'libc:malloc(size=arg1)' -P 'r:libc:malloc' -o m.dat -- ./prog
                                                       # function probes (uprobes) on ./prog's mallocs
  tracewatch record -e 'irq:*' -o irq.dat --file-version 7 --compression zstd
                                                       # a compressed version-7 file
  tracewatch report sched.dat                          # read it back (or trace-cmd report)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracewatch record",
        description="Record live kernel events to a trace.dat file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", default="trace.dat", metavar="FILE", help="output file (default trace.dat)")
    p.add_argument("--file-version", type=int, choices=(6, 7), default=6, help="trace.dat version (default 6)")
    p.add_argument("--compression", choices=("none", "zstd", "zlib"), default="none",
                   help="compress the data (version 7 only)")
    p.add_argument("--filter", metavar="EXPR", help="kernel filter for every recorded event (ftrace syntax)")
    p.add_argument("--no-kallsyms", action="store_true",
                   help="do not store /proc/kallsyms (~5 MB; needed only to print kernel addresses as symbols)")
    add_live_options(p)
    return p


def _record(args: argparse.Namespace, command: list[str]) -> int:
    from ..formats.tracedat_writer import TraceDatWriter, TraceMeta
    from ..stream.filter import Filter

    if not args.events and not args.probes:
        raise CaptureError("nothing to record: name events with -e (e.g. -e 'sched:*'; 'tracewatch list' lists them) "
                           "or function probes with -P")
    if args.compression != "none" and args.file_version != 7:
        raise CaptureError("--compression needs --file-version 7")

    def kernel_filter(fmt):
        return Filter.parse(args.filter, fmt).kernel_prefilter() if args.filter else None

    session = open_live_session(args, list(args.events), kernel_filter=kernel_filter, command=command)
    writer = None
    try:
        for note in session.filter_notes:
            raise CaptureError(note.replace("; filtering in tracewatch instead", ""))
        inst = session.instance
        pairs = [tuple(e.split(":", 1)) for e in session.enabled]

        def meta() -> TraceMeta:
            return TraceMeta.from_tracefs(inst.path, pairs,
                                          kallsyms_path=None if args.no_kallsyms else "/proc/kallsyms")

        cpus = max(session.source.cpus) + 1
        try:
            writer = TraceDatWriter(args.output, meta(), cpus, version=args.file_version,
                                    compression=None if args.compression == "none" else args.compression)
        except OSError as e:
            raise CaptureError(f"{args.output}: {e.strerror or e}") from None
        until = f" for {args.duration:g} s" if args.duration else ""
        stop = "until the command exits or Ctrl-C" if command else "Ctrl-C to end"
        print(f"Recording {len(session.enabled)} event(s) to {args.output}{until}... {stop}.", file=sys.stderr)
        pages = 0
        for batch in session.page_batches():
            writer.add_pages(batch.cpu, batch.pages)
            pages += len(batch.pages) // session.source.page_size
        writer.meta = meta()  # saved_cmdlines and per-CPU stats as they are at the end
        writer.close()
        lost = session.lost_events()
        total = sum(writer.data_sizes)
        print(f"{args.output}: {pages} pages ({total / 1e6:.1f} MB), "
              f"{sum(max(v, 0) for v in lost.values())} events lost", file=sys.stderr)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        session.close()
    if command and session.command_status:
        print(f"tracewatch: the command exited with status {session.command_status}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch record``; returns the exit status."""
    own, rest = split_double_dash(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    return run_tool(lambda: _record(args, rest), prog="tracewatch")
