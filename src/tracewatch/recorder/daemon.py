"""The long-running flight recorder: a live session teed into a FlightRecorder, triggers, signals, status.

::

    LiveSession ──pages──> FlightRecorder.add_pages     (page tap: before decoding, so the ring
         │                                               holds the newest events even when the
         └──chunks──> Dispatcher ──> handlers ──dump()   handlers fall behind)
                                   (a script, or --trigger's declarative handlers)

    signals (main thread, flags only)   SIGUSR1: dump now      SIGHUP: reload the script, keep the ring
                                        SIGTERM/SIGINT: stop: drain, end hooks, pending dumps written,
                                        instance removed; a second one, or the end of the
                                        grace period (stop watchdog), abandons the handlers
    service thread                      serves SIGUSR1 dumps (under the recorder's lock, so a dump
                                        happens even when no event arrives) and rewrites the status
                                        file every few seconds (atomically: temporary name, rename)

:class:`FlightRun` puts it together for ``tracewatch flight`` and for
``tracewatch run --keep``; :class:`DeclarativeTrigger` is ``--trigger
'system:event: FILTER'`` as a handler; :func:`live_meta` makes the metadata
of a dump from the live instance (static parts read once, saved_cmdlines and
per-CPU stats at each dump).  Log lines go to stderr, one per event, in the
form journald keeps (``tracewatch[PID]: dump written: PATH (N events, M bytes, REASON)``).

Stopping with a stuck handler: handlers run in the main thread, so a stop
request (a flag) is not seen while a handler loops.  The first SIGTERM/SIGINT
starts a watchdog thread; when the run has not ended ``stop_grace`` seconds
later, it sends SIGTERM to the main thread again with the handlers marked
abandoned, and the signal handler raises :class:`HandlersAbandoned` there
(Python runs signal handlers between bytecodes, and a blocking system call
returns EINTR first): the run unwinds, skips the end hooks, writes its
pending dumps, removes the instance and ends with :class:`HandlersStuckError`
(exit status 2).  When even that does not bring the main thread back within
another grace period (stuck in C code), the watchdog removes the instance and
probes and the temporaries of dumps being written itself, and calls
``os._exit(2)``.  (A C call that holds the GIL for ever stops the watchdog
too: then only SIGKILL ends it, and the next start or ``tracewatch cleanup``
removes what is left.)
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

from ..errors import HandlersStuckError, ScriptError, TracewatchError
from ..procfs import pid_alive
from ..formats.tracedat_writer import TraceMeta
from ..script.api import EventHandler, ScriptHandlers, parse_duration
from ..stream.dispatch import Dispatcher, pattern_matches
from .dump import (FlightRecorder, _iso, _write_atomic, cleanup_dead_dump_dirs,
                   register_dump_dir, remove_open_temporaries, unregister_dump_dir)
from .history import Window

__all__ = ["FlightRun", "DeclarativeTrigger", "parse_trigger", "live_meta", "log_line", "read_status",
           "format_status", "tune_malloc", "STATUS_VERSION", "HandlersAbandoned", "HandlersStuckError"]

STATUS_VERSION = 1

#: The longest a stop may take in tracewatch's own code (the drain after SIGTERM) before the stop
#: watchdog abandons the run anyway; a handler gets only --stop-grace.
STOP_DRAIN_SECONDS = 30.0

#: Where code that is not the user's lives: tracewatch itself and the Python installation.
_NOT_USER_CODE = tuple({os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
                        os.path.join(sys.prefix, ""), os.path.join(sys.base_prefix, ""),
                        os.path.join(sys.exec_prefix, ""), os.path.join(sys.base_exec_prefix, "")})

#: How much longer the stop watchdog waits when the handlers are done and pending dumps are being
#: written (a slow disk), before its last resort.
DUMP_WRITE_ALLOWANCE_SECONDS = 60.0

#: How long the stop watchdog's last resort waits for tracefs to remove the instance before it exits.
HARD_EXIT_CLEANUP_SECONDS = 10.0

#: The least extra ring a live recorder keeps beyond --keep (see FlightRun.recorder_for).
MIN_HEADROOM_BYTES = 16 << 20


def log_line(message: str) -> None:
    """One journald-friendly line on stderr: ``tracewatch[PID]: message``."""
    try:
        print(f"tracewatch[{os.getpid()}]: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr gone (the terminal hung up): the recorder must still stop and clean up


class HandlersAbandoned(BaseException):
    """Raised in the main thread to leave a handler that did not return after a stop request.

    A BaseException, as KeyboardInterrupt is: the dispatcher's error policy
    (``--on-error skip``) and a handler's own ``except Exception`` must not
    swallow it.
    """


def tune_malloc() -> bool:
    """Keep a weeks-long recorder's resident memory flat (glibc only; True when applied).

    Measured with bench/soak.py (64M ring, 300k events/s): with glibc's
    defaults RSS kept growing (276 -> 356 MiB in 70 s) because its mmap
    threshold rises after each large free, so page batches and dump buffers
    then come from the heap and fragment it, and the writer thread gets an
    arena of its own.  A fixed 128 KiB mmap threshold and two arenas keep it
    flat (220-226 MiB).  ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_ARENA_MAX`` set
    by the user win.
    """
    from ..libc import libc

    try:
        mallopt = libc().mallopt
    except (OSError, AttributeError):
        return False
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok &= bool(mallopt(-3, 128 << 10))  # M_MMAP_THRESHOLD
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok &= bool(mallopt(-8, 2))  # M_ARENA_MAX
    return ok


# ------------------------------------------------------------------ metadata of live dumps

def live_meta(session: Any, *, kallsyms_path: str | None = "/proc/kallsyms") -> Callable[[], TraceMeta]:
    """A function giving the :class:`TraceMeta` of a dump of ``session``'s instance.

    The formats, header and kallsyms are read once, now; ``saved_cmdlines``
    and the per-CPU stats again at each dump (cheap), so a dump names the
    processes seen since the start.
    """
    inst = session.instance
    pairs = [tuple(e.split(":", 1)) for e in session.enabled]
    base = TraceMeta.from_tracefs(inst.path, events=pairs, kallsyms_path=kallsyms_path)
    top = inst.tracefs

    def meta() -> TraceMeta:
        try:
            cmdlines = top.read("saved_cmdlines")
        except OSError:
            cmdlines = base.cmdlines
        cpustats = {}
        for cpu in session.source.cpus:
            try:
                cpustats[cpu] = inst.read(f"per_cpu/cpu{cpu}/stats")
            except (OSError, TracewatchError):
                pass
        return replace(base, cmdlines=cmdlines, cpustats=cpustats or base.cpustats)

    return meta


# ------------------------------------------------------------------ declarative triggers

def parse_trigger(spec: str, available: Sequence[str]) -> tuple[str, str | None]:
    """``'raw_syscalls:sys_exit: ret == -11'`` -> (``raw_syscalls:sys_exit``, ``ret == -11``).

    The event is the part before the last ``': '`` that names an event of
    ``available`` (``system:event`` names; globs allowed), so a filter may
    itself hold ``': '`` in a string.  No filter: every event of it triggers.
    """
    from fnmatch import fnmatchcase

    spec = spec.strip()

    def names_event(text: str) -> bool:
        text = text.strip()
        if ":" not in text or " " in text:
            return False
        return any(fnmatchcase(a, text) for a in available)

    if names_event(spec):
        return spec, None
    at = len(spec)
    while True:
        at = spec.rfind(": ", 0, at)
        if at < 0:
            break
        head, tail = spec[:at].strip(), spec[at + 2:].strip()
        if names_event(head):
            return head, tail or None
    head = spec.split(": ", 1)[0].strip()
    raise ScriptError(f"--trigger {spec!r}: {head!r} names no event of this kernel "
                      "(write 'system:event: FILTER', e.g. 'raw_syscalls:sys_exit: ret == -11')")


class DeclarativeTrigger:
    """``--trigger 'system:event: FILTER'`` as a batch handler: a dump per matching event.

    ``count``/``within``/``per``: fire only when ``count`` matching events
    (of one value of the ``per`` field, e.g. ``common_pid``) happen within
    ``within``: once per burst (:class:`~tracewatch.recorder.history.Window`).
    The filter is the dispatcher's vectorised ``where=``: events that do not
    match never become Python objects.
    """

    def __init__(self, event: str, where: str | None, *, reason: str | None = None, count: int = 1,
                 within: str | None = None, per: str | None = None,
                 fire: Callable[..., Any] | None = None) -> None:
        self.event = event
        self.where = where
        self.reason = reason or (f"{event}: {where}" if where else event)
        self.count = max(1, int(count))
        if self.count > 1 and within is None:
            raise ScriptError("--count needs --within (e.g. --count 5 --within 10ms)")
        self.window = Window(within) if self.count > 1 else None
        self.per = per
        self.matched = 0
        self.fired = 0
        self._fire = fire

    def handler(self) -> EventHandler:
        return EventHandler(self.event, self.on_batch, where=self.where, batch=True)

    def on_batch(self, b: Any) -> None:
        ts = b.common_ts
        n = len(ts)
        self.matched += n
        keys = getattr(b, self.per) if self.per else None
        for i in range(n):
            t = int(ts[i])
            if self.window is not None:
                key = keys[i].item() if keys is not None and hasattr(keys[i], "item") else \
                    (keys[i] if keys is not None else None)
                if not self.window.reached(key, t, self.count):
                    continue
            self.fired += 1
            ev = b.take_([i]).events_()[0]
            if self._fire is not None:
                self._fire(self.reason, ev)
            else:
                from . import dump

                dump(reason=self.reason, event=ev)

    def handlers(self) -> ScriptHandlers:
        return ScriptHandlers(events=[self.handler()])


# ------------------------------------------------------------------ status file

def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def read_status(path: str) -> dict[str, Any]:
    """The status file's document (a directory: its ``status.json``)."""
    if os.path.isdir(path):
        path = os.path.join(path, "status.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TracewatchError(f"{path}: no status file (is `tracewatch flight --status-file {path}` running?)") \
            from None
    except (OSError, ValueError) as e:
        raise TracewatchError(f"{path}: cannot read status: {e}") from None


    return True


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f}{unit}"
    return str(n)


def format_status(doc: dict[str, Any], now: float | None = None) -> str:
    """The status document as ``tracewatch status`` prints it (under 80 columns)."""
    now = time.time() if now is None else now
    pid = doc.get("pid")
    state = doc.get("state", "?")
    age = now - float(doc.get("updated_unix", now))
    if state == "running" and pid and not pid_alive(int(pid)):
        state = f"gone (pid {pid} is not running; last update {age:.0f} s ago)"
    elif state == "running" and age > 3 * float(doc.get("interval_s", 5)) + 5:
        state = f"running? (no update for {age:.0f} s)"
    ring = doc.get("ring", {})
    h = doc.get("handlers", {})
    d = doc.get("dumps", {})
    rows = [
        ("state", f"{state} (pid {pid})"),
        ("uptime", f"{doc.get('uptime_s', 0):.0f} s, {doc.get('reloads', 0)} reload(s)"),
        ("watching", doc.get("script") or ", ".join(doc.get("triggers_spec") or []) or "-"),
        ("events", f"{doc.get('events_per_s', 0):,.0f}/s now, {doc.get('events_total', 0):,} in all, "
                   f"{doc.get('lost', 0):,} lost"),
        ("ring", f"{_fmt_bytes(ring.get('bytes'))} of {_fmt_bytes(ring.get('keep_bytes'))}, "
                 f"{ring.get('span_s', 0):.2f} s of history, {ring.get('events', 0):,} events"),
        ("handlers", ("LATE: " if h.get("late") else "keeping up: ") + f"{h.get('lag_ms', 0):.0f} ms behind "
                     f"the newest page; {h.get('late_triggers', 0)} late trigger(s), worst "
                     f"{h.get('max_trigger_lag_ms', 0):.0f} ms"),
        ("dumps", f"{d.get('dumps', 0)} written, {d.get('triggers', 0)} triggers, "
                  f"{d.get('suppressed_cooldown', 0)} in cooldown, {d.get('suppressed_limit', 0)} over the limit, "
                  f"{d.get('skipped_disk_full', 0)} disk full, {d.get('busy', 0)} busy, {d.get('failed', 0)} failed"
                  + (f" ({d['failure']})" if d.get("failed") and d.get("failure") else "")),
        ("out", doc.get("out_dir", "-")),
        ("memory", f"{_fmt_bytes(doc.get('rss_bytes'))} resident"),
    ]
    last = doc.get("last_dump")
    if last:
        rows.append(("last dump", f"{last.get('file')} ({last.get('events', 0):,} events, "
                                  f"{_fmt_bytes(last.get('bytes'))}, {last.get('reason')})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# ------------------------------------------------------------------ the run

class _Notify:
    """systemd's sd_notify (Type=notify units); does nothing without NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.addr = os.environ.get("NOTIFY_SOCKET")

    def send(self, text: str) -> None:
        if not self.addr:
            return
        addr = "\0" + self.addr[1:] if self.addr.startswith("@") else self.addr
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(text.encode(), addr)
        except OSError:
            pass


class FlightRun:
    """A live session recorded into a :class:`FlightRecorder`, with triggers, signals and a status file.

    ``session``: an open :class:`~tracewatch.sources.session.LiveSession`
    (the caller closes it, after :meth:`run`); ``recorder``: made for it (see
    :meth:`recorder_for`); ``script``/``script_args``: the trigger script
    (reloaded on SIGHUP; ``runner``: the already loaded
    :class:`~tracewatch.script.runner.ScriptRunner` of it), or ``handlers``: ready-made handlers (declarative
    triggers); ``status_path``: rewritten every ``status_interval`` seconds;
    ``stop_grace``: seconds a handler may run on after SIGTERM/SIGINT before it
    is abandoned (see the module docstring).
    """

    def __init__(self, session: Any, recorder: FlightRecorder, *, script: str | None = None,
                 script_args: Sequence[str] = (), handlers: ScriptHandlers | None = None,
                 on_error: str = "skip", status_path: str | None = None, status_interval: float = 2.0,
                 triggers_spec: Sequence[str] = (), log: Callable[[str], None] = log_line,
                 signals: bool = True, runner: Any = None, stop_grace: float = 5.0) -> None:
        self.session = session
        self.recorder = recorder
        self.script = script
        self.script_args = list(script_args)
        self.on_error = on_error
        self.status_path = status_path
        self.status_interval = status_interval
        self.triggers_spec = list(triggers_spec)
        self.log = log
        self.use_signals = signals
        self.runner = runner
        if runner is not None:
            self.script = script or runner.path
            self.script_args = list(script_args)
            self.handlers = runner.handlers
        elif script is not None:
            from ..script.runner import ScriptRunner

            self.runner = ScriptRunner(script, self.script_args, on_error=on_error)
            self.handlers = self.runner.handlers
        else:
            self.handlers = handlers or ScriptHandlers()
        self.dispatcher: Dispatcher | None = None
        self.reloads = 0
        self.started = time.time()
        self._t0 = time.monotonic()
        self._reload_requested = False
        self._dump_requests: list[float] = []
        # the service thread sleeps on a pipe: writing a byte is safe in a signal handler
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # signal.set_wakeup_fd: the C-level signal handler writes each signal's number here, so the
        # service thread sees a SIGTERM even while the main thread is stuck in C code (where Python
        # handlers cannot run) and starts the stop watchdog
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_r, False)
        os.set_blocking(self._signal_w, False)
        self._previous_wakeup_fd: int | None = None
        self._stop_service = False
        self.stop_reason: str | None = None
        self._previous_signals: dict[int, Any] = {}
        self._rate = (time.monotonic(), 0)  # (when, events_added) of the previous status
        self._events_per_s = 0.0
        self.state = "starting"
        self.notify = _Notify()
        self.stop_grace = stop_grace
        self._stop_signals = 0
        self._abandon: str | None = None  # why the handlers are abandoned (set: raise in the main thread)
        self._cleaning = False  # past the handlers: a stop signal must not raise into the clean-up
        self._ended = threading.Event()  # the run has cleaned up (the watchdog stands down)
        self._watchdog: threading.Thread | None = None
        self._watchdog_lock = threading.Lock()
        self._stop_signal: str | None = None  # the first SIGTERM/SIGINT, as the service thread saw it
        self._dir_note: str | None = None  # register_dump_dir's note of this run's dump directory

    @staticmethod
    def recorder_for(session: Any, keep: int | str, out_dir: str, **kw: Any) -> FlightRecorder:
        """A FlightRecorder shaped for ``session``'s pages, writing in a background thread.

        ``kallsyms=True`` stores ``/proc/kallsyms`` in every dump (``--kallsyms``).
        """
        cpus = max(session.source.cpus) + 1 if session.source.cpus else None
        kw.setdefault("background", True)
        # beyond --keep, the ring holds what is read while the handlers catch up to a trigger: a quarter
        # of --keep, at least 16 MiB (measured: live handlers see an event up to ~1 s after its page
        # was read when a CPU is quiet; at 300k events/s that is ~9 MiB)
        from .page_ring import parse_size

        kw.setdefault("headroom", max(0.25, MIN_HEADROOM_BYTES / max(parse_size(keep), 1)))
        # kallsyms (~5 MB) only when asked: written into every dump, it was the largest part after the pages
        kallsyms = "/proc/kallsyms" if kw.pop("kallsyms", False) else None
        return FlightRecorder(keep, out_dir, live_meta(session, kallsyms_path=kallsyms),
                              page_size=session.source.page_size,
                              commit_size=session.source.commit_size, little=sys.byteorder == "little",
                              cpus=cpus, **kw)

    # -- handlers ---------------------------------------------------------------

    def _make_dispatcher(self, handlers: ScriptHandlers, runner: Any) -> Dispatcher:
        if runner is not None and runner.perf is not None:
            runner.perf.bind(self.session.context)
        d = Dispatcher(handlers.events, handlers.timers, handlers.lost, on_error=self.on_error)
        d.prepare(self.session.formats.values())
        return d

    def _unmatched(self, handlers: ScriptHandlers) -> list[str]:
        fmts = list(self.session.formats.values())
        return [h.pattern for h in handlers.events
                if h.pattern not in ("*", "*:*") and not any(pattern_matches(h.pattern, f) for f in fmts)]

    def _reload(self) -> None:
        """SIGHUP: load the script again; on success swap handlers (end hooks of the old, start of the new)."""
        self._reload_requested = False
        if self.script is None:
            self.log("SIGHUP: no script to reload (declarative triggers); ignored")
            return
        from ..script.runner import ScriptRunner

        try:
            runner = ScriptRunner(self.script, self.script_args, on_error=self.on_error)
            d = self._make_dispatcher(runner.handlers, runner)
        except TracewatchError as e:
            self.log(f"reload failed, the running script stays: {e}")
            return
        missing = self._unmatched(runner.handlers)
        if missing:
            self.log(f"reload: {', '.join(missing)} not traced by this session (restart to trace them)")
        old = self.dispatcher
        if old is not None:
            for f in self.handlers.end:
                old.call_hook(f)
        self.runner, self.handlers, self.dispatcher = runner, runner.handlers, d
        for f in self.handlers.start:
            d.call_hook(f)
        self.reloads += 1
        self.log(f"reloaded {self.script} (reload {self.reloads}); the ring keeps its "
                 f"{self.recorder.ring.bytes >> 20} MiB")

    # -- signals -----------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except OSError:
            pass  # the pipe is full: the service thread has wake-ups pending anyway

    def request_dump(self) -> None:
        """Ask for a dump of everything held, served by the service thread (safe in a signal handler)."""
        self._dump_requests.append(time.monotonic())
        self._wake()

    def request_reload(self) -> None:
        """Reload the script before the next chunk (safe in a signal handler)."""
        self._reload_requested = True

    def request_stop(self, reason: str = "stop requested") -> None:
        """End the run: drain, end hooks, pending dumps written (safe in a signal handler)."""
        self.stop_reason = reason
        self.session.stop()

    def _on_signal(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        # flags only: the work happens in the dispatch loop or the service thread; the one exception
        # is leaving handlers that do not return after a stop (HandlersAbandoned, below)
        if signum == signal.SIGUSR1:
            self.request_dump()
            return
        if signum == signal.SIGHUP:
            self.request_reload()
            return
        # a second SIGTERM/SIGINT is counted by the service thread (_signals_arrived), which sees
        # every one through the wakeup fd, even when another handler (the session's SIGINT) took it
        if self.stop_reason is None:
            name = signal.Signals(signum).name
            # the watchdog's own SIGTERM: the stop was asked by the signal the service thread saw
            self.request_stop(self._stop_signal if self._abandon is not None and self._stop_signal else name)
            self._start_watchdog()
        if self._abandon is not None and not self._cleaning:
            raise HandlersAbandoned(self._abandon)

    def _start_watchdog(self) -> None:
        """Start the stop watchdog once (from the signal handler or the service thread, whichever is first)."""
        with self._watchdog_lock:
            if self._watchdog is None and self.stop_grace is not None and not self._ended.is_set():
                self._watchdog = threading.Thread(target=self._watch_stop, name="tracewatch-stop-watchdog",
                                                  daemon=True)
                self._watchdog.start()

    def _watch_stop(self) -> None:
        """After a stop request: abandon handlers that outlive the grace period; exit if even that fails."""
        grace = max(0.0, float(self.stop_grace))
        if self._ended.wait(grace):
            return
        # past the grace period: abandon the handlers as soon as the main thread is in one; tracewatch's
        # own drain (the last pages read, decoded and dispatched) gets longer, but not for ever
        drain_limit = time.monotonic() + max(STOP_DRAIN_SECONDS - grace, 0.0)
        while not self._main_in_handler() and not self._cleaning and time.monotonic() < drain_limit:
            if self._ended.wait(0.2):
                return
        if self._cleaning or self._main_in_handler():
            why = f"a handler was stuck: still running {grace:g} s after {self._stop_name()}"
        else:
            why = f"the run did not end within {STOP_DRAIN_SECONDS:g} s of {self._stop_name()}"
        self._abandon_handlers(why)
        if self._ended.wait(max(grace, 2.0)):
            return
        if self._cleaning and self._ended.wait(DUMP_WRITE_ALLOWANCE_SECONDS):
            return  # past the handlers, writing the pending dumps: a slow disk is not a stuck handler
        self._hard_exit()

    def _main_in_handler(self) -> bool:
        """Whether the main thread is running user code (a handler, a hook): a frame of a file that is
        neither tracewatch's nor the Python installation's (stdlib, site-packages)."""
        frame = sys._current_frames().get(threading.main_thread().ident)
        while frame is not None:
            name = frame.f_code.co_filename
            if not name.startswith(_NOT_USER_CODE) and not name.startswith("<frozen"):
                return True
            frame = frame.f_back
        return False

    def _abandon_handlers(self, why: str) -> None:
        """Make the main thread leave the handlers: HandlersAbandoned, raised by our signal handler there."""
        if self._cleaning or self._abandon is not None:
            return
        self._abandon = why
        self.log(f"{why}: abandoning the handlers")
        try:
            # our SIGTERM handler raises in the main thread; the signal also makes a blocking system call
            # there return (EINTR) so that the handler runs
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        except (OSError, ValueError):
            pass

    def _hard_exit(self) -> None:
        """The main thread does not come back (stuck in C code): remove the kernel state here and exit."""
        why = self._abandon or f"the run did not end {self.stop_grace:g} s after {self._stop_name()}"
        temporaries = remove_open_temporaries()
        name = self.session.instance.name
        outcome: list[str] = []

        def remove_instance() -> None:
            try:
                self.session.instance.close()
                outcome.append(f"instance {name} removed")
            except Exception as e:  # noqa: BLE001 - exiting anyway; the next start cleans up
                outcome.append(f"instance {name} NOT removed ({e}; `tracewatch cleanup` will)")

        # in a thread of its own, waited for a bounded time: tracefs itself can block (its event mutex
        # is held while another process removes uprobes), and the exit must happen regardless
        closer = threading.Thread(target=remove_instance, name="tracewatch-stop-cleanup", daemon=True)
        closer.start()
        closer.join(HARD_EXIT_CLEANUP_SECONDS)
        removed = outcome[0] if outcome else \
            f"instance {name} NOT removed (tracefs did not answer; `tracewatch cleanup` will)"
        unregister_dump_dir(self._dir_note)
        self.log(f"{why}; the main thread does not come back (stuck in C code?): {removed}, "
                 f"{len(temporaries)} unfinished dump file(s) removed, exiting")
        try:
            print(f"tracewatch: error: {why}, and it did not come back when interrupted; handlers abandoned, "
                  f"{removed}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        os._exit(2)

    def _stop_name(self) -> str:
        return self.stop_reason or self._stop_signal or "the stop request"

    def _install_signals(self) -> None:
        if not self.use_signals or threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous_wakeup_fd = signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            self._previous_wakeup_fd = None
        for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            self._previous_signals[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        if self._previous_wakeup_fd is not None:
            try:
                signal.set_wakeup_fd(self._previous_wakeup_fd)
            except (ValueError, OSError):
                pass
            self._previous_wakeup_fd = None
        for sig, prev in self._previous_signals.items():
            try:
                signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
            except (ValueError, OSError, TypeError):
                pass
        self._previous_signals.clear()

    # -- the service thread: SIGUSR1 dumps and the status file --------------------

    def _service(self) -> None:
        next_status = time.monotonic()
        while not self._stop_service:
            timeout = max(0.0, next_status - time.monotonic()) if self.status_path else None
            ready, _, _ = select.select([self._wake_r, self._signal_r], [], [], timeout)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            if self._signal_r in ready:
                self._signals_arrived()
            self._serve_dumps()
            if self.status_path and time.monotonic() >= next_status:
                self.write_status()
                next_status = time.monotonic() + self.status_interval

    def _signals_arrived(self) -> None:
        """Signal numbers from the wakeup fd: a stop starts the watchdog even if the main thread is stuck."""
        try:
            numbers = os.read(self._signal_r, 4096)
        except (BlockingIOError, InterruptedError):
            return
        for n in numbers:
            if n not in (signal.SIGTERM, signal.SIGINT) or self._abandon is not None:
                continue  # (the watchdog's own SIGTERM comes after _abandon is set)
            self._stop_signals += 1
            name = signal.Signals(n).name
            if self._stop_signal is None:
                self._stop_signal = name
            self._start_watchdog()
            if self._stop_signals >= 2:
                self._abandon_handlers(f"a second {name} before the handlers returned")

    def _serve_dumps(self) -> None:
        while self._dump_requests:
            at = self._dump_requests.pop(0)
            p = self.recorder.dump_now("SIGUSR1", requested_at=at)
            if p is None:
                self.log("SIGUSR1: dump not written (see the counters: cooldown, disk full or busy)")

    def status(self) -> dict[str, Any]:
        """The status document (also what the status file holds)."""
        rs = self.recorder.stats()
        now = time.monotonic()
        prev_t, prev_n = self._rate
        if now - prev_t >= 0.5:
            self._events_per_s = (rs["events_added"] - prev_n) / (now - prev_t)
            self._rate = (now, rs["events_added"])
        try:
            lost = sum(max(v, 0) for v in self.session.lost_events().values())
        except Exception:  # noqa: BLE001 - a status must not fail for a counter read mid-update
            lost = None
        d = self.dispatcher
        newest = rs["newest_ts"]
        handled = d.last_ts if d is not None else None
        lag_ns = (newest - handled) if newest is not None and handled is not None else 0
        late = self.recorder.late_ns and lag_ns > self.recorder.late_ns
        last = self.recorder.results[-1] if self.recorder.results else None
        return {
            "version": STATUS_VERSION,
            "pid": os.getpid(),
            "state": self.state,
            "stop_requested": self.stop_reason or self._stop_signal,
            "started": _iso(self.started),
            "updated": _iso(time.time()),
            "updated_unix": time.time(),
            "interval_s": self.status_interval,
            "uptime_s": round(now - self._t0, 1),
            "script": self.script,
            "triggers_spec": self.triggers_spec,
            "out_dir": self.recorder.writer.out_dir,
            "instance": self.session.instance.name,
            "events_enabled": list(self.session.enabled),
            "events_total": rs["events_added"],
            "events_per_s": round(self._events_per_s, 1),
            "events_dispatched": d.events_seen if d is not None else 0,
            "lost": lost,
            "reloads": self.reloads,
            "ring": {"keep_bytes": rs["keep_bytes"], "bytes": rs["bytes"], "pages": rs["pages"],
                     "events": rs["events"], "span_s": round(rs["span_ns"] / 1e9, 3),
                     "newest_ts_ns": newest},
            "handlers": {"lag_ms": round(max(lag_ns, 0) / 1e6, 1), "late": bool(late),
                         "late_triggers": rs["late_triggers"],
                         "last_trigger_lag_ms": None if rs["last_trigger_lag_ns"] is None
                         else round(rs["last_trigger_lag_ns"] / 1e6, 1),
                         "max_trigger_lag_ms": round(rs["max_trigger_lag_ns"] / 1e6, 1),
                         "errors": d.errors if d is not None else 0},
            "dumps": {k: rs[k] for k in ("dumps", "triggers", "suppressed_cooldown", "suppressed_limit",
                                         "skipped_disk_full", "failed", "failure", "rotated", "bytes_written",
                                         "busy", "pending", "writing")},
            "last_dump": None if last is None else {
                "file": os.path.basename(last.path), "path": last.path, "reason": last.reason,
                "events": last.events, "bytes": last.bytes,
                "trigger_to_file_ms": round(last.trigger_to_file_seconds * 1000, 1)},
            "rss_bytes": _rss_bytes(),
        }

    def write_status(self) -> None:
        if not self.status_path:
            return
        try:
            doc = self.status()
            d = os.path.dirname(os.path.abspath(self.status_path))
            os.makedirs(d, 0o700, exist_ok=True)
            _write_atomic(self.status_path, (json.dumps(doc, indent=2) + "\n").encode(),
                          self.recorder.writer.file_mode)
        except Exception as e:  # noqa: BLE001 - the recorder goes on without its status file
            self.log(f"status file {self.status_path}: {type(e).__name__}: {e}")

    # -- running -----------------------------------------------------------------

    def run(self) -> Dispatcher:
        """Trace until the session ends (duration, SIGTERM, Ctrl-C); end hooks and dumps on every way out.

        Raises :class:`HandlersStuckError` when the handlers had to be
        abandoned (the caller's ``session.close()`` then removes the instance).
        """
        from . import set_current_recorder

        session, rec = self.session, self.recorder
        session.add_page_tap(rec.add_pages)
        previous = set_current_recorder(rec)
        service = threading.Thread(target=self._service, name="tracewatch-flight-service", daemon=True)
        # killed runs' dump directories get their temporaries removed; this one is noted for the next
        for path in cleanup_dead_dump_dirs():
            self.log(f"removed {path} (a dump cut short by a killed run)")
        self._dir_note = register_dump_dir(rec.writer.out_dir)
        try:
            return self._run(session, rec, service, previous)
        except HandlersAbandoned as e:
            raise HandlersStuckError(f"{e}; handlers abandoned, end hooks skipped, pending dumps written, "
                                     "tracing instance removed") from None
        finally:
            self._ended.set()
            unregister_dump_dir(self._dir_note)

    def _run(self, session: Any, rec: FlightRecorder, service: threading.Thread, previous: Any) -> Dispatcher:
        from . import set_current_recorder

        started = False
        try:
            self.dispatcher = self._make_dispatcher(self.handlers, self.runner)
            # a stop ends the handling after the session's grace, as in `run`: what was read but not
            # handled is counted (Dispatcher.dropped_at_stop), not handled for minutes by a slow handler
            session.add_stop_listener(lambda: self.dispatcher is not None and self.dispatcher.stop_handling())
            self._install_signals()
            service.start()
            self.state = "running"
            self.notify.send("READY=1")
            d = self.dispatcher
            for f in self.handlers.start:
                d.call_hook(f)
            started = True
            for chunk in session.chunks():
                if self._reload_requested:
                    self._reload()
                self.dispatcher.feed(chunk)
        finally:
            if self.stop_reason or self._stop_signal:
                self.log(f"{self._stop_name()}: stopping")
            self.state = "stopping"
            self.notify.send("STOPPING=1")
            try:
                if self._abandon is not None:
                    self.log(f"end hooks skipped: the handlers were abandoned ({self._abandon})")
                elif started and self.dispatcher is not None:
                    saved = sys.exc_info()[1]
                    for f in self.handlers.end:
                        try:
                            self.dispatcher.call_hook(f)
                        except Exception:  # noqa: BLE001
                            if saved is None:
                                raise
                sys.stdout.flush()
            finally:
                # from here on a stop signal is only counted (our handler stays installed until the
                # dumps are written: the previous one would kill the process in the middle of one)
                self._cleaning = True
                self._stop_service = True
                self._wake()
                if service.is_alive():
                    service.join()
                self._serve_dumps()
                os.close(self._wake_r)
                os.close(self._wake_w)
                try:
                    rec.close()
                finally:
                    set_current_recorder(previous)
                    self.state = "stopped"
                    self.write_status()
                    self._restore_signals()
                    os.close(self._signal_r)
                    os.close(self._signal_w)
        return self.dispatcher


def parse_seconds(value: str | None) -> float | None:
    """``"2s"``/``"500ms"``/``"1.5"`` -> seconds (None stays None)."""
    return None if value is None else parse_duration(value) / 1e9
