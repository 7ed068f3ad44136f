"""A live tracing session: the kernel as an event source, like a trace.dat file.

:class:`LiveSession` sets up a private tracefs instance (events, kernel-side
filters, pid following, buffer size, clock, probes through ``setup``), starts
an optional command gated so that it is traced from its first instruction,
reads every CPU's ring buffer (:class:`~tracewatch.sources.live.LiveSource`)
and turns the pages into time-ordered chunks (:class:`~tracewatch.stream.merge.LiveMerger`).

It ends when the command exits (everything it traced is drained and
handed on), or on a stop: the duration passes, :meth:`stop` is called, or
SIGINT, SIGTERM or SIGHUP arrives.  A stop turns tracing off at once, drains
what the kernel still holds, and tells the stop listeners (the dispatcher:
:meth:`add_stop_listener`) ``stop_grace`` seconds later if the run is still
going, so that a consumer that cannot keep up ends promptly (what it did not
handle is counted as dropped at stop).  A second signal interrupts
(:class:`Interrupted`, a ``KeyboardInterrupt``): end hooks may be skipped, not
the cleanup.  Closing removes the instance and everything it set up, on every
way out, with SIGINT, SIGTERM and SIGHUP held back until it is done (see
:meth:`LiveSession.close`).

Raw pages can be tapped on their way (``add_page_tap``): the flight recorder
keeps them and ``tracewatch record`` writes them, both without re-encoding.

tracewatch's own threads are left out of the trace (``exclude_self``), as
``trace-cmd record`` leaves itself out unless told ``--no-filter``: reading
trace_pipe_raw is itself a stream of syscalls, which would otherwise swell
the counts of anyone tracing syscalls system-wide.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import CaptureError
from ..formats.event_format import EventFormat
from ..formats.context import TraceContext
from ..formats.symbols import Cmdlines, KernelSymbols, TraceSymbols
from ..stream.chunk import EventChunk
from ..stream.merge import LiveMerger
from .live import LiveSource, PageBatch
from .tracefs import Instance, _install_handlers as _install_instance_cleanup, own_thread_ids

__all__ = ["LiveSession", "LiveContext", "Interrupted", "STOP_SIGNALS"]

#: the signals a session on the main thread handles from creation to close: the first
#: stops the run (as the duration would), a second one interrupts (:class:`Interrupted`)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A second stop signal: the run is abandoned (cleanup still happens); exit status 128 + ``signum``.

    A ``KeyboardInterrupt``, so that code which already unwinds on Ctrl-C
    (``finally`` blocks, ``cli.run_tool``) unwinds on SIGTERM and SIGHUP too.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class LiveContext(TraceContext):
    """A TraceContext whose comm lookup asks ``/proc/PID/comm``, then the kernel's saved_cmdlines.

    A pid seen for the first time is usually still alive (events are decoded
    within a fraction of a second), and ``/proc`` names it exactly; for one that
    has already exited, the kernel's ``saved_cmdlines`` (refreshed at most every
    ``refresh_interval`` seconds) may still know it.  Saved cmdlines are only
    the fallback: pids are reused (``pid_max`` is often 32768), and the table
    keeps names of processes long gone.  Names found are remembered for the run.
    """

    def __init__(self, formats, symbols, read_saved_cmdlines: Callable[[], str] | None = None,
                 refresh_interval: float = 0.2) -> None:
        super().__init__(formats, symbols)
        self._read_saved = read_saved_cmdlines
        self._refresh_interval = refresh_interval
        self._refreshed_at = 0.0
        self._saved: dict[int, str] = {}

    def comm(self, pid: int) -> str:
        if pid == 0:
            return "<idle>"
        by_pid = self.symbols.cmdlines.by_pid
        name = by_pid.get(pid)
        if name is not None:
            return name
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="surrogateescape") as f:
                name = f.read().rstrip("\n")
        except OSError:
            name = None
        if name is None and self._read_saved is not None:
            now = time.monotonic()
            if pid not in self._saved and now - self._refreshed_at >= self._refresh_interval:
                self._refreshed_at = now
                try:
                    self._saved = Cmdlines.parse(self._read_saved()).by_pid
                except (OSError, CaptureError):
                    pass
            name = self._saved.get(pid)
        if name is None:
            return "<...>"
        by_pid[pid] = name
        return name


class LiveSession:
    """The live kernel as a source of :class:`EventChunk` objects.

    ``events``: globs (``sched:*``), each must match; ``optional_events``:
    enabled where the kernel has them; ``kernel_filter(fmt)``: the kernel
    filter text for an enabled event (or None), installed where the kernel
    accepts it (``filter_notes`` says where it did not; the dispatcher filters
    in Python anyway); ``pids``: trace only
    these (and their children with ``follow_children``); ``command``: run it,
    traced from its start, and stop when it exits; ``duration``: seconds;
    ``setup(instance) -> [extra events]`` runs before events are enabled
    (uprobes are added there).

    ``exclude_self``: record no events of this process's own threads
    (``set_event_notrace_pid``), those that exist when tracing starts and
    those started later (looked for every ``self_scan_interval`` seconds by a
    thread of the session's own, itself excluded).  The command, started
    before, is still traced, and so is, system-wide, any child process
    started later; a thread of ours named in ``pids`` is traced as asked.
    Where the kernel cannot exclude tasks, a system-wide session says so once
    on stderr.

    ``buffer_kb``: the per-CPU ring buffer in KiB; None means
    :data:`DEFAULT_BUFFER_KB`.  ``stop_grace``: how long after a stop the
    stop listeners are told (see the module docstring).

    A pid in ``pids`` that does not exist, or a command that cannot be found
    or run, is a :class:`CaptureError` before anything is traced.  After the
    run, ``command_status`` is the command's exit status (negative: killed by
    that signal) and ``command_ended`` whether the session ended it (a stop
    came first); ``stop_reason`` says what stopped the run (None: the command
    exited), ``stop_signal`` which signal did, if one did, and
    ``interrupted_by`` the second signal, if one came.
    """

    live = True

    #: per-CPU ring buffer of a live session (KiB); the kernel's default (~1.4 MB) overflows
    #: within milliseconds when syscalls are traced on a busy machine
    DEFAULT_BUFFER_KB = 16384

    def __init__(
        self,
        events: Sequence[str],
        *,
        optional_events: Sequence[str] = (),
        kernel_filter: Callable[[EventFormat], str | None] | None = None,
        pids: Sequence[int] | None = None,
        follow_children: bool = True,
        command: Sequence[str] | None = None,
        duration: float | None = None,
        buffer_kb: int | None = None,
        clock: str | None = None,
        subbuf_kb: int | None = None,
        setup: Callable[[Instance], list[str]] | None = None,
        mmap: bool | None = False,
        release_interval: float = 0.05,
        exclude_self: bool = True,
        self_scan_interval: float = 0.1,
        stop_grace: float = 0.5,
    ) -> None:
        self.requested_events = list(events)
        self.kernel_filter = kernel_filter
        self.pids = list(pids or [])
        self.follow_children = follow_children
        self.command = list(command) if command else None
        self.duration = duration
        self.release_interval = release_interval
        self.exclude_self = exclude_self
        self.self_scan_interval = self_scan_interval
        self._self_excluded: bool | None = None  # None: not tried yet; False: the kernel cannot
        self._scan_lock = threading.Lock()
        self._scan: _SelfScan | None = None  # while page_batches runs
        self.filter_notes: list[str] = []
        self.command_status: int | None = None
        self._proc: subprocess.Popen | None = None
        self._gate_w = -1
        self._gate_ready = -1
        self._taps: list[Callable[[int, np.ndarray], None]] = []
        self._stopping = False
        self.stop_reason: str | None = None
        self.stop_signal: int | None = None
        self.interrupted_by: int | None = None
        self.stop_grace = stop_grace
        self._stop_listeners: list[Callable[[], None]] = []
        self._listeners_told = False
        self._clock: _StopClock | None = None
        self.command_ended = False
        self.events_seen = 0
        self._seen_per_cpu = np.zeros(0, np.int64)
        self._lost_accounted: dict[int, int] = {}  # per CPU: lost events already given to on_lost
        # signals: installed for the session's life (main thread only); held back while setting
        # up and closing, so that kernel state is never left half made or half removed
        self._closed = False
        self._holding_signals = True
        self._held_signals: list[int] = []
        self._previous_handlers: dict[int, object] = {}
        self._take_signals()
        try:
            for pid in self.pids:
                _check_pid(pid)
            if self.command:
                _check_command(self.command[0])
            self.instance = Instance()
        except BaseException:
            self._give_back_signals()
            raise
        try:
            self.instance.buffer_size_kb = buffer_kb or self.DEFAULT_BUFFER_KB
            if subbuf_kb:
                if not self.instance.has_subbuf_size:
                    raise CaptureError("this kernel has no buffer_subbuf_size_kb: sub-buffer size is fixed")
                self.instance.subbuf_size_kb = subbuf_kb
            if clock:
                if clock not in self.instance.available_clocks:
                    raise CaptureError(f"unknown trace clock {clock!r} (this kernel has: "
                                       f"{', '.join(self.instance.available_clocks)})")
                self.instance.trace_clock = clock
            extra = setup(self.instance) if setup is not None else []
            wanted = self.requested_events + list(extra or [])
            wanted += [p for p in optional_events if p not in wanted and self.instance.list_events(p)]
            if not wanted:
                raise CaptureError("no events to trace: name some with -e (e.g. -e 'sched:*') or in handlers")
            self.enabled = self.instance.enable(wanted)
            self.formats: dict[int, EventFormat] = {}
            for full in self.enabled:
                system, _, name = full.partition(":")
                fmt = self.instance.event_format(system, name)
                self.formats[fmt.id] = fmt
            for fmt in self.formats.values():
                expr = kernel_filter(fmt) if kernel_filter is not None else None
                if expr and not self.instance.set_filter(fmt.full_name, expr):
                    self.filter_notes.append(f"the kernel rejected the filter on {fmt.full_name} "
                                             f"({self.instance.last_error}); filtering in tracewatch instead")
            if self.pids:
                self.instance.follow_pids(self.pids, children=follow_children)
            self.context = LiveContext(self.formats, self._symbols(),
                                       lambda: self.instance.tracefs.read("saved_cmdlines"))
            self.source = LiveSource(self.instance, mmap=mmap)
            self.merger = LiveMerger(self.context, self.source.cpus, self.source.page_size,
                                     commit_size=self.source.commit_size, little=sys.byteorder == "little",
                                     prepend=self.source.prepend_room)
        except BaseException:
            self.close()
            raise
        self._holding_signals = False
        if self._held_signals:  # asked to stop while setting up: give up before tracing anything
            signum = self._held_signals[0]
            # close() delivers the held signals to the handlers from before the session once
            # everything is removed: SIGTERM dies of it, SIGINT raises KeyboardInterrupt
            self.close()
            raise Interrupted(signum)  # a handler that ignored it: still no run

    # -- signals -------------------------------------------------------------
    def _take_signals(self) -> None:
        """Handle STOP_SIGNALS for the session's life (main thread only; elsewhere the
        duration, the command and :meth:`stop` still end it)."""
        if not _in_main_thread():
            return
        _install_instance_cleanup()  # Instance's own handlers first: ours chain back to them
        for sig in STOP_SIGNALS:
            try:
                previous = signal.getsignal(sig)
                if previous is None:  # installed from C: leave it alone
                    continue
                signal.signal(sig, self._on_signal)
                self._previous_handlers[sig] = previous
            except (ValueError, OSError):
                pass

    def _give_back_signals(self) -> list[int]:
        """Put the previous handlers back (where ours is still the one installed); returns
        the signals held back meanwhile, for the caller to deliver again."""
        for sig, previous in self._previous_handlers.items():
            try:
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, previous)  # type: ignore[arg-type]
            except (ValueError, OSError):
                pass
        self._previous_handlers.clear()
        held, self._held_signals = self._held_signals, []
        return held

    def _on_signal(self, signum: int, frame) -> None:  # noqa: ANN001 (signal handler signature)
        """The first signal stops the run; a second interrupts it; while setting up or
        closing, signals are held back (delivered again when that is done)."""
        if self._holding_signals:
            self._held_signals.append(signum)
            return
        if self.stop_signal is None:
            self.stop_signal = signum
            if self.stop_reason is None:
                self.stop(signal.Signals(signum).name)
            else:  # already stopping (duration, command exit): the signal says not to wait
                self.stop_reason += f", then {signal.Signals(signum).name}"
                self._tell_stop_listeners()
            return
        if self.interrupted_by is None:
            self.interrupted_by = signum  # kept: code that swallows exceptions may swallow this one
        src = getattr(self, "source", None)
        if src is None or src.started_at is None:
            return  # not tracing yet: the first signal already ends the run before it starts
        raise Interrupted(signum)

    # -- set-up helpers ------------------------------------------------------
    def _symbols(self) -> TraceSymbols:
        tfs = self.instance.tracefs
        # names are learnt as the run goes (see LiveContext.comm), not from saved_cmdlines
        # up front: its entries of exited processes would name the pids reused since
        cmdlines = Cmdlines()
        printk: dict[int, str] = {}
        try:
            from ..formats.symbols import parse_printk_formats

            printk = parse_printk_formats(tfs.read("printk_formats"))
        except (OSError, CaptureError):
            pass
        return TraceSymbols(kallsyms=KernelSymbols.deferred(_read_kallsyms), printk_formats=printk, cmdlines=cmdlines,
                            long_size=8 if sys.maxsize > 2**32 else 4, little_endian=sys.byteorder == "little")

    def add_page_tap(self, tap: Callable[[int, np.ndarray], None]) -> None:
        """Call ``tap(cpu, pages)`` with every batch of raw pages before it is decoded."""
        self._taps.append(tap)

    # -- the command ---------------------------------------------------------
    def _spawn_gated(self) -> None:
        """Start the command held before exec, so that its first event is traced.

        A tiny Python wrapper says it is ready, waits for the go byte, then
        execs the command (subprocess.Popen itself waits for exec, so the
        wait cannot be done in preexec_fn).  The ready pipe stays open across
        the wait and closes on exec: :meth:`_release_command` reads it to its
        end, so an exec that failed is an error, not a trace of the wrapper.
        """
        assert self.command is not None
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        argv = [sys.executable, "-I", "-S", "-c", _GATE, str(go_r), str(ready_w), *self.command]
        try:
            self._proc = subprocess.Popen(argv, pass_fds=(go_r, ready_w))
        except OSError as e:
            for fd in (go_r, go_w, ready_r, ready_w):
                os.close(fd)
            raise CaptureError(f"cannot start {self.command[0]!r}: {e.strerror or e}") from None
        os.close(go_r)
        os.close(ready_w)
        ok = os.read(ready_r, 1)
        self._gate_w = go_w
        if not ok:
            os.close(ready_r)
            self._proc.wait()
            raise CaptureError(f"cannot start {self.command[0]!r}")
        self._gate_ready = ready_r
        # the command joins the pids asked for with -p (set_event_pid is one list)
        self.instance.follow_pids([*self.pids, self._proc.pid], children=True)

    def _release_command(self, *, check: bool = False) -> None:
        """Let the gated command exec; ``check``: wait for the exec and raise CaptureError if it failed."""
        if self._gate_w >= 0:
            os.write(self._gate_w, b"g")
            os.close(self._gate_w)
            self._gate_w = -1
        if self._gate_ready >= 0:
            ready, self._gate_ready = self._gate_ready, -1
            try:
                why = b"" if not check else os.read(ready, 4096)  # EOF: the exec worked
            finally:
                os.close(ready)
            if why:
                self._proc.wait()
                self.command_status = self._proc.returncode
                raise CaptureError(f"cannot run {self.command[0]!r}: {why.decode(errors='replace')}")

    # -- our own threads ----------------------------------------------------
    def _exclude_own_threads(self) -> bool:
        """Put the threads of this process not yet excluded in the instance's notrace list.

        Called once before tracing starts, after the gated command was spawned:
        with ``event-fork`` on (a command or ``-p``), a process started by an
        excluded thread would inherit the exclusion, and the command must be
        traced.  The command is a child process, never one of our threads, so
        it is not in ``own_thread_ids()``.  Called again every
        ``self_scan_interval`` by :class:`_SelfScan`, for threads started since
        (a script's); without ``event-fork`` nothing would add those.  Returns
        whether later scans can exclude anything.
        """
        with self._scan_lock:  # the first call (reader) and the scanning thread's may overlap
            if not self.exclude_self or self._self_excluded is False:
                return False
            traced = set(self.pids)
            self._self_excluded = self.instance.exclude_pids(t for t in own_thread_ids() if t not in traced)
            if not self._self_excluded and not self.pids and not self.command:
                print("tracewatch: note: this kernel has no set_event_notrace_pid; tracewatch's own "
                      "events are in the trace too", file=sys.stderr)
            return self._self_excluded

    # -- reading -------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """Stop: tracing off now, drain what the kernel holds, end the chunks; the stop
        listeners are told ``stop_grace`` seconds later if the run still goes on.

        Safe from a signal handler or another thread.
        """
        if self.stop_reason is None:
            self.stop_reason = reason
        self._finish()
        if self._clock is not None:
            self._clock.tell_listeners_at(time.monotonic() + self.stop_grace)
        elif self.stop_grace <= 0:
            self._tell_stop_listeners()

    def _finish(self) -> None:
        """End the chunks (everything the kernel holds is still drained and handed on)."""
        if self._stopping:
            return
        self._stopping = True
        if getattr(self, "source", None) is None:
            return  # still setting up: page_batches will not start
        # off at once, not when the consumer next asks for pages: the trace ends at the stop
        try:
            self.instance.tracing_on = False
        except CaptureError:
            pass
        self.source.stop()

    def add_stop_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from any thread, or a signal handler) when a stop should end the
        handling: ``stop_grace`` seconds after a stop, or at a signal.  Called at most once."""
        self._stop_listeners.append(listener)

    def _tell_stop_listeners(self) -> None:
        if self._listeners_told:
            return
        self._listeners_told = True
        for listener in list(self._stop_listeners):
            listener()

    def page_batches(self) -> Iterator[PageBatch]:
        """Raw page batches until the end (duration, command exit, stop, a signal)."""
        if self._stopping:  # stopped before tracing started: nothing to trace
            return
        if self.command:
            self._spawn_gated()
        scan = None
        try:
            try:
                self.merger.warm_up()
            except Exception:  # noqa: BLE001 - only a warm-up: the first release pays instead
                pass
            # started before the first exclusion, so that these threads are excluded too
            self._clock = _StopClock(self._duration_reached, self._tell_stop_listeners)
            if self.exclude_self:
                scan = self._scan = _SelfScan(self._exclude_own_threads, self.self_scan_interval)
            self._exclude_own_threads()
            if self._stopping:
                return
            self.source.start()
            if self.duration is not None:
                self._clock.stop_at(self.source.started_at + self.duration)
            self._release_command(check=True)
            for batch in self.source.batches():
                for tap in self._taps:
                    tap(batch.cpu, batch.pages)
                yield batch
                if scan is not None and scan.error is not None:
                    raise scan.error
                if self._proc is not None and not self._stopping and self._proc.poll() is not None:
                    self.command_status = self._proc.returncode
                    self._finish()
        finally:
            if scan is not None:
                scan.close()
                self._scan = None
            self._reap_command()

    def _duration_reached(self) -> None:
        self.stop(f"{self.duration:g} s passed")

    def chunks(self) -> Iterator[EventChunk]:
        """Time-ordered chunks of decoded events, released behind the watermark."""
        next_release = time.monotonic() + self.release_interval
        merger = self.merger
        for cpu, pages in self.page_batches():
            merger.add_pages(cpu, pages)
            now = time.monotonic()
            if now >= next_release:
                next_release = now + self.release_interval
                chunk = merger.release()
                if chunk is not None:
                    self._count(chunk)
                    yield chunk
        chunk = merger.release(final=True)
        if chunk is not None:
            self._count(chunk)
            yield chunk
        if self._clock is not None:  # only now: the grace runs while the last chunk is handled
            self._clock.close()

    def _count(self, chunk: EventChunk) -> None:
        self.events_seen += len(chunk)
        self._count_losses(chunk)
        counts = self.merger.last_released  # the chunk's events per CPU
        if len(counts) > len(self._seen_per_cpu):
            self._seen_per_cpu = np.concatenate((self._seen_per_cpu,
                                                 np.zeros(len(counts) - len(self._seen_per_cpu), np.int64)))
        self._seen_per_cpu[: len(counts)] += counts

    def _count_losses(self, chunk: EventChunk) -> None:
        """Give loss marks of unknown size (-1: the page only says events were lost) a count:
        the events the kernel's per-CPU stats (overrun + dropped) say were lost, less those
        already accounted for (earlier marks).  Later unknown marks of the same CPU in the
        chunk get 0 (the first one counted them; on_lost is not called for 0).  Where the
        stats say nothing new (they may already have counted this loss at an earlier
        mark), the mark stays -1."""
        missed = chunk.missed_before
        marked = np.flatnonzero(missed)
        if len(marked) == 0:
            return
        first_unknown: dict[int, bool] = {}  # per CPU in this chunk: whether its first unknown mark got a count
        for i in marked.tolist():
            cpu, count = int(chunk.cpu[i]), int(missed[i])
            if count < 0:
                if cpu in first_unknown:
                    if first_unknown[cpu]:
                        missed[i] = 0  # counted in the chunk's first mark of this CPU
                    continue
                count = self._kernel_lost(cpu) - self._lost_accounted.get(cpu, 0)
                first_unknown[cpu] = count > 0
                if count <= 0:
                    continue  # the stats say nothing new (or nothing): unknown it stays
                missed[i] = count
            self._lost_accounted[cpu] = self._lost_accounted.get(cpu, 0) + count

    def _kernel_lost(self, cpu: int) -> int:
        """Events the kernel lost on ``cpu`` so far (its per-CPU stats), -1 if it cannot say."""
        try:
            st = self.instance.per_cpu_stats(cpu)
        except (OSError, CaptureError):
            return -1
        return int(st.get("overrun", 0)) + int(st.get("dropped_events", 0))

    def _reap_command(self) -> None:
        if self._proc is None:
            return
        self._release_command()
        if self._proc.poll() is None and self._stopping and self.command_status is None:
            # we stop before the command ends (duration, Ctrl-C): end it too
            self.command_ended = True
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        elif self._proc.poll() is None:
            self._proc.wait()
        self.command_status = self._proc.returncode

    # -- accounting ----------------------------------------------------------
    def lost_events(self) -> dict[int, int]:
        """Events lost per CPU: the larger of the pages' marks and the kernel's stats."""
        out = dict(self.merger.lost_events)
        for cpu in self.source.cpus:
            out[cpu] = max(out.get(cpu, 0), self._kernel_lost(cpu))
        return out

    def summary(self, dropped_at_stop: int = 0) -> str:
        """Events seen and lost per CPU, and tracewatch's own CPU time, as printed at the end of a live run.

        ``dropped_at_stop``: events read but not handled because the run was stopped
        (:attr:`Dispatcher.dropped_at_stop`), with a note saying why.
        """
        import resource

        lost = self.lost_events()
        seen = self._seen_per_cpu
        rows = [f"{'CPU':>4} {'events':>12} {'lost':>10}"]
        for cpu in sorted(lost):
            n = int(seen[cpu]) if cpu < len(seen) else 0
            rows.append(f"{cpu:>4} {n:>12} {lost[cpu]:>10}")
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = ru.ru_utime + ru.ru_stime
        # the CPU time includes start-up (~0.5 s): a rate over fewer events would only measure that
        per_m = (f", {cpu_s / self.events_seen * 1e6:.2f} s per million events"
                 if self.events_seen >= 1_000_000 else "")
        text = (f"{self.events_seen} events seen, {sum(max(v, 0) for v in lost.values())} lost "
                f"({self.source.mode} reader); tracewatch CPU {cpu_s:.2f} s{per_m}\n" + "\n".join(rows))
        if dropped_at_stop:
            text += (f"\n{dropped_at_stop} events dropped at stop: read, but the run stopped "
                     f"({self.stop_reason}) before the handlers got to them")
        if os.environ.get("TRACEWATCH_PROFILE"):
            text += "\n" + self.merger.profile() + f"\nreader: {self.source.pages_read} pages, " \
                f"{self.source.arenas_made} arenas of {self.source.arena_pages} pages"
        return text

    def close(self) -> None:
        """Remove the instance and everything it set up (idempotent).

        STOP_SIGNALS are held back meanwhile (a KeyboardInterrupt raised half way
        would leave probes and the instance behind) and delivered again, to the
        handlers that were there before the session, once everything is removed.
        """
        self._holding_signals = True  # first: a signal from here on waits
        if self._closed:
            return
        self._closed = True
        try:
            try:
                if self._proc is not None:
                    self._release_command()
                    if self._proc.poll() is None:
                        self._proc.terminate()
                        try:
                            self._proc.wait(5)
                        except subprocess.TimeoutExpired:
                            self._proc.kill()
            finally:
                if self._clock is not None:
                    self._clock.close()
                if self._scan is not None:  # page_batches never finished (its generator was dropped)
                    self._scan.close()
                src = getattr(self, "source", None)
                if src is not None:
                    src.close()
                self.instance.close()
        finally:
            for signum in self._give_back_signals():
                signal.raise_signal(signum)  # its handler runs now: KeyboardInterrupt, or die of it

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The gate: report ready, wait for the go byte, exec the command; the ready pipe closes on
# exec, or says why the exec failed (the parent reports it), exit 127.
_GATE = """
import os, sys
go, ready = int(sys.argv[1]), int(sys.argv[2])
os.write(ready, b"r")
os.read(go, 1); os.close(go)
os.set_inheritable(ready, False)
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as e:
    os.write(ready, (e.strerror or str(e)).encode())
    sys.exit(127)
"""


class _StopClock:
    """A thread that calls ``at_deadline()`` when the duration is up and ``at_grace()`` when a
    stop's grace is over (each at most once), whatever the consumer is busy with.

    The reading loop cannot keep time: it runs only when the consumer asks for
    the next batch, and a slow handler may not ask for minutes.
    """

    def __init__(self, at_deadline: Callable[[], None], at_grace: Callable[[], None]) -> None:
        self._at_deadline = at_deadline
        self._at_grace = at_grace
        self._deadline: float | None = None
        self._grace: float | None = None
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="tracewatch-stop-clock", daemon=True)
        self._thread.start()

    def stop_at(self, when: float) -> None:
        """Call ``at_deadline`` at ``when`` (time.monotonic())."""
        with self._wake:
            self._deadline = when
            self._wake.notify()

    def tell_listeners_at(self, when: float) -> None:
        """Call ``at_grace`` at ``when``, or earlier if asked earlier before."""
        # no lock: this may run in a signal handler that interrupted a holder of the lock;
        # the thread polls often enough (see _run) to notice
        if self._grace is None or when < self._grace:
            self._grace = when

    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                now = time.monotonic()
                if self._deadline is not None and now >= self._deadline:
                    self._deadline = None
                    self._call(self._at_deadline)
                    continue
                if self._grace is not None and now >= self._grace:
                    self._grace = None
                    self._call(self._at_grace)
                    continue
                due = [t for t in (self._deadline, self._grace) if t is not None]
                # at most 0.1 s asleep: a grace set from a signal handler does not notify
                self._wake.wait(min([0.1] + [t - now for t in due]))

    def _call(self, func: Callable[[], None]) -> None:
        self._wake.release()  # the callback may call back into stop_at / tell_listeners_at
        try:
            func()
        except Exception:  # noqa: BLE001 - a failed stop must not kill the clock
            pass
        finally:
            self._wake.acquire()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()


class _SelfScan:
    """A thread that puts this process's new threads in the notrace list every ``interval`` seconds.

    ``scan()`` returns whether to go on.  A thread of its own, not the
    reading loop: that loop runs only when the consumer asks for the next
    batch, and a busy consumer (a slow handler, numba compiling) would leave
    a new thread traced until then.  It sleeps between scans, so it never
    competes for the GIL on the event path.  An error (the kernel refusing a
    write) ends the scans and is kept in ``error`` for the reading loop to
    raise.
    """

    def __init__(self, scan: Callable[[], bool], interval: float) -> None:
        self._step = scan
        self._interval = interval
        self._done = threading.Event()
        self.error: CaptureError | None = None
        self._thread = threading.Thread(target=self._run, name="tracewatch-self-scan", daemon=True)
        self._thread.start()  # returns once the thread runs: its id is in /proc/self/task

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                if not self._step():
                    return  # the kernel cannot exclude tasks: nothing to look for
            except CaptureError as e:
                self.error = e
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join()


def _check_pid(pid: int) -> None:
    """A CaptureError unless process ``pid`` exists (tracing it would trace nothing)."""
    if pid <= 0:
        raise CaptureError(f"-p: not a process id: {pid}")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise CaptureError(f"no process {pid}") from None
    except PermissionError:
        pass  # it exists, owned by someone else


def _check_command(name: str) -> None:
    """A CaptureError unless ``name`` is a program that can be run (found on PATH, executable),
    so that a typo fails before tracing, not with a trace of tracewatch's own launcher."""
    import shutil

    if "/" in name:
        if not os.path.exists(name):
            raise CaptureError(f"cannot run {name!r}: no such file")
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise CaptureError(f"cannot run {name!r}: not an executable file")
    elif shutil.which(name) is None:
        raise CaptureError(f"cannot run {name!r}: command not found")


def _read_kallsyms() -> str:
    with open("/proc/kallsyms", encoding="utf-8", errors="replace") as f:
        return f.read()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
