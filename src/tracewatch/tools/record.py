"""``tracewatch record``: write live events to a trace.dat file that trace-cmd and KernelShark open.

Pages are copied from the kernel's ring buffers to the file as they are
(no decoding, no re-encoding), so recording costs little more than the copy.

What was captured is kept however the recording ends: the pages go to disk
as they come (:class:`~tracewatch.formats.tracedat_writer.StreamingTraceDatWriter`),
and every way out this process can see finishes the file: the end of ``-d``
or of the command, Ctrl-C (drains what the kernel holds), SIGTERM and SIGHUP
(the same), a second Ctrl-C or signal (stops draining), a full disk (says
what was kept, exit 2) and an error.  While the file is being finished,
further signals wait.  The output and ``--filter`` are checked before
tracing starts: a filter the kernel cannot apply is refused, since raw pages
cannot be filtered after the kernel wrote them.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

from ..errors import CaptureError, UsageError
from ._command import tool_main, tool_parser
from ._live import add_live_options, command_exit_status, open_live_session

__all__ = ["main", "build_parser"]

EXAMPLES = """\
examples:
  tracewatch record -e 'sched:*' -o sched.dat -d 5   # 5 s of scheduler events
  tracewatch record -e raw_syscalls -o ls.dat -- ls -l
                                      # ls's syscalls, from its start to end
  tracewatch record -e 'sched:sched_switch' -p 1234 -o x.dat
                                      # only pid 1234 (and its children)
  tracewatch record -P 'libc:malloc(size=arg1)' -P 'r:libc:malloc' \\
      -o m.dat -- ./prog              # function probes on ./prog's mallocs
  tracewatch record -e 'irq:*' -o irq.dat --file-version 7 --compression zstd
                                      # a compressed version-7 file
  tracewatch record -e 'sched:*' -o shared.dat --mode 0644
                                      # readable by everyone (default 0600)
  tracewatch report sched.dat         # read it back (or trace-cmd report)
"""

#: Signals that end a recording the way Ctrl-C does (SIGINT is the session's own).
_ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _file_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"mode {text} is out of range (0000 to 0777)")
    return mode


def build_parser() -> argparse.ArgumentParser:
    p = tool_parser("record", "Record live kernel events to a trace.dat file.", EXAMPLES)
    p.add_argument("-o", "--output", default="trace.dat", metavar="FILE", help="output file (default trace.dat)")
    p.add_argument("--file-version", type=int, choices=(6, 7), default=6, help="trace.dat version (default 6)")
    p.add_argument("--compression", choices=("none", "zstd", "zlib"), default="none",
                   help="compress the data (version 7 only)")
    p.add_argument("--filter", metavar="EXPR",
                   help="kernel filter for every recorded event (ftrace syntax); refused if the kernel "
                        "cannot apply it exactly")
    p.add_argument("--no-kallsyms", action="store_true",
                   help="do not store /proc/kallsyms (~5 MB; needed only to print kernel addresses as symbols)")
    p.add_argument("--mode", type=_file_mode, default=0o600, metavar="OCTAL",
                   help="permissions of the output file (default 0600: it holds kernel addresses)")
    add_live_options(p)
    return p


class _EndOnSignals:
    """SIGTERM and SIGHUP end the recording like Ctrl-C: stop, drain, finish the file.

    A second one (or one after Ctrl-C) raises KeyboardInterrupt, which stops
    the drain; the file is still finished.  :attr:`received` is the first
    signal, for the process to die of it once everything is written and
    cleaned up.  Installed only in the main thread (signal handlers can only
    be set there).
    """

    def __init__(self, session) -> None:  # noqa: ANN001
        self.session = session
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _on_signal(self, signum: int, frame) -> None:  # noqa: ANN001
        if self.received is None:
            self.received = signum
        if self.session_stopping():
            raise KeyboardInterrupt
        self.session.stop()

    def session_stopping(self) -> bool:
        return bool(getattr(self.session, "_stopping", False))

    def __enter__(self) -> "_EndOnSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in _ENDING_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]


@contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Signals that arrive meanwhile (SIGINT, SIGTERM, SIGHUP) are only noted: finishing the file is not interrupted."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                for sig in (signal.SIGINT, *_ENDING_SIGNALS)}
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _output_error(path: str, e: OSError) -> CaptureError:
    """One line for an output that cannot be written; the path at fault is named."""
    where = e.filename if isinstance(e.filename, str) and e.filename != path else None
    reason = e.strerror or str(e)
    return CaptureError(f"{path}: {reason}" + (f" ({where})" if where and not where.endswith(".probe") else ""))


def _record(args: argparse.Namespace) -> int:
    command = args.command
    from ..formats.tracedat_writer import StreamingTraceDatWriter, TraceMeta, check_output
    from ..stream.filter import Filter

    if not args.events and not args.probes:
        raise UsageError("nothing to record: name events with -e (e.g. -e 'sched:*'; 'tracewatch list' lists them) "
                           "or function probes with -P")
    if args.compression != "none" and args.file_version != 7:
        raise UsageError("--compression needs --file-version 7")
    try:
        check_output(args.output)  # before any tracing: nothing to clean up if it fails
    except OSError as e:
        raise _output_error(args.output, e) from None

    inexact: list[str] = []  # events whose filter the kernel could only take as the user wrote it

    def kernel_filter(fmt):  # noqa: ANN001, ANN202
        if not args.filter:
            return None
        exact = Filter.parse(args.filter, fmt).kernel_text()
        if exact is None:
            # given as written, the kernel either refuses it (and says why: common_ts, ...) or
            # reads it differently from tracewatch (a string with a newline): both are refused below
            inexact.append(fmt.full_name)
            return args.filter
        return exact

    session = open_live_session(args, list(args.events), kernel_filter=kernel_filter, command=command)
    writer = None
    ended_by: int | None = None
    try:
        for note in session.filter_notes:
            raise CaptureError(note.replace("; filtering in tracewatch instead", "")
                               + ": raw pages cannot be filtered after the kernel wrote them")
        if inexact:
            raise CaptureError(f"the kernel cannot apply --filter {args.filter!r} exactly on {inexact[0]} "
                               "(strings with a newline or of more than 255 bytes, common_ts...): raw pages "
                               "cannot be filtered after the kernel wrote them")
        inst = session.instance
        pairs = [tuple(e.split(":", 1)) for e in session.enabled]

        def meta(kallsyms: bool = not args.no_kallsyms) -> TraceMeta:
            return TraceMeta.from_tracefs(inst.path, pairs, kallsyms_path="/proc/kallsyms" if kallsyms else None)

        cpus = max(session.source.cpus) + 1
        first_meta = meta()
        try:
            writer = StreamingTraceDatWriter(args.output, first_meta, cpus, version=args.file_version,
                                             compression=None if args.compression == "none" else args.compression,
                                             mode=args.mode)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                size = len(first_meta.kallsyms) + sum(len(t) for ts in first_meta.event_formats.values() for t in ts)
                hint = "" if args.no_kallsyms else f"; --no-kallsyms saves {len(first_meta.kallsyms) / 1e6:.1f} MB"
                full = "disk full" if e.errno == errno.ENOSPC else "disk quota exceeded"
                raise CaptureError(f"{args.output}: {full}: no room for the metadata (~{size / 1e6:.1f} MB){hint}"
                                   ) from None
            raise _output_error(args.output, e) from None
        until = f" for {args.duration:g} s" if args.duration else ""
        stop = "until the command exits or Ctrl-C" if command else "Ctrl-C to end"
        print(f"Recording {len(session.enabled)} event(s) to {args.output}{until}... {stop}.", file=sys.stderr)

        write_error: OSError | None = None
        pending: BaseException | None = None
        with _EndOnSignals(session) as ending:
            batches = session.page_batches()
            try:
                for batch in batches:
                    try:
                        writer.add_pages(batch.cpu, batch.pages)
                    except OSError as e:
                        write_error = e  # the pages before it are kept: finish the file with them
                        break
            except BaseException as e:  # a second Ctrl-C or signal, a reader error: keep what was captured
                pending = e
            finally:
                with _signals_held():
                    batches.close()  # restores SIGINT, ends the command
            ended_by = ending.received

        with _signals_held() as held:
            try:
                # saved_cmdlines and per-CPU stats as they are at the end (kallsyms is written already)
                writer.meta = meta(kallsyms=False)
            except (OSError, CaptureError):
                pass  # the ones read at the start
            try:
                writer.close()
            except OSError as e:
                raise CaptureError(f"{args.output}: the file could not be finished: {e.strerror or e}") from None
            lost = session.lost_events()
            session.close()
        if held and ended_by is None:
            ended_by = held[0] if held[0] != signal.SIGINT else None
            if held[0] == signal.SIGINT and pending is None:
                pending = KeyboardInterrupt()
        total = sum(writer.data_sizes)
        pages = total // first_meta.page_size
        if write_error is not None:
            at = f" up to {writer.last_event_ts / 1e9:.6f}" if writer.last_event_ts is not None else ""
            why = "disk full" if write_error.errno in (errno.ENOSPC, errno.EDQUOT) else \
                (write_error.strerror or str(write_error))
            raise CaptureError(f"{args.output}: kept {pages} pages ({total / 1e6:.1f} MB){at}; {why}")
        print(f"{args.output}: {pages} pages ({total / 1e6:.1f} MB), "
              f"{sum(max(v, 0) for v in lost.values())} events lost"
              + (" (interrupted before the kernel was drained)" if pending is not None else ""), file=sys.stderr)
        if pending is not None:
            raise pending
    except BaseException:
        if writer is not None and not writer.closed:
            writer.abort()
        raise
    finally:
        session.close()
        if ended_by is not None:
            _die_of(ended_by)
    return command_exit_status(session, command)


def _die_of(signum: int) -> None:
    """End the process by ``signum``, as it asked (the file is written and the kernel clean by now)."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tracewatch record``; returns the exit status."""
    return tool_main(build_parser(), _record, argv, command=True)
