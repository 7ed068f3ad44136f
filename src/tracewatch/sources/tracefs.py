"""tracefs control: find the mount, own a private tracing instance, leave no trace.

tracewatch never changes the global tracing state.  Every run creates its own
instance, ``instances/tracewatch-<pid>-<start>-<n>``, configures and reads that,
and removes it again (:class:`Instance`).  ``<start>`` is the owner's start time
(field 22 of ``/proc/PID/stat``): with the pid it names one process for good,
even once the pid is reused.  Removal happens on every exit path:

* ``with Instance() as inst:`` / ``inst.close()`` (idempotent);
* ``atexit``, for a program that forgets to close;
* SIGTERM and SIGHUP, whose default action would kill the process without
  unwinding: the handler cleans up, then dies of the signal as before;
  SIGINT keeps Python's ``KeyboardInterrupt``, which unwinds through the
  ``with`` blocks and ``atexit`` (so a tool can still drain and report);
* a second signal while the instance is being removed waits until it is gone
  (:func:`_signals_held`);
* SIGKILL cannot be caught: the next start removes instances and uprobes whose
  owner is gone: its pid dead, or running another process since (a different
  start time) (:func:`cleanup_stale`, also ``tracewatch cleanup``).  Names of
  the older scheme without the start time (``tracewatch-<pid>-<n>``) are
  judged by the pid alone.

Uprobes are global (``uprobe_events``); the ones an instance adds live in the
event group ``tracewatch_<pid>_<start>_<n>``, so they too can be traced back to
their owner and removed.  They are defined many per write(2) (3000 in about
half a second), enabled with one write to the group's ``enable`` file in the
instance, and removed with one ``-:GROUP/`` line; what remains slow is the
kernel's work per probe, above all disabling (an RCU grace period each).

Features are detected by probing files (``buffer_subbuf_size_kb``,
``options/event-fork``, ``set_event_notrace_pid``), never by kernel version.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import difflib
import errno
import fnmatch
import itertools
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ..errors import CaptureError
from ..formats.event_format import EventFormat, HeaderPage, parse_event_format
from ..libc import libc
from ..procfs import pid_alive, process_start_time

__all__ = [
    "TraceFS",
    "Instance",
    "find_tracefs",
    "cleanup_stale",
    "own_thread_ids",
    "INSTANCE_PREFIX",
    "UPROBE_GROUP_PREFIX",
]

DEFAULT_MOUNT = "/sys/kernel/tracing"
# Where older systems (and debugfs users) find it; used only when already mounted there.
LEGACY_MOUNT = "/sys/kernel/debug/tracing"

INSTANCE_PREFIX = "tracewatch-"
UPROBE_GROUP_PREFIX = "tracewatch_"
# tracewatch-<pid>-<start>-<n>, and the older tracewatch-<pid>-<n> (no start time)
_INSTANCE_RE = re.compile(r"^tracewatch-(\d+)-(?:(\d+)-)?\d+$")
# tracewatch_<pid>_<start>_<n>, and the older tracewatch_<pid>_<n> and tracewatch_<pid>
_UPROBE_GROUP_RE = re.compile(r"^tracewatch_(\d+)(?:_(\d+)_\d+|_\d+)?$")
#: errno of a probe the kernel cannot place (ENOTSUPP, kernel-internal: Python's errno lacks it)
ENOTSUPP = 524
#: bytes of uprobe definitions per write(2): the kernel parses a write line by line, so
#: one write defines many probes; blocks keep a signal from waiting for all of them
_UPROBE_BLOCK_BYTES = 32 * 1024
#: this many enabled probes take seconds to disable: say so rather than seem to hang
_SLOW_DISABLE_NOTE = 200


# --------------------------------------------------------------------------- mount

def _tracefs_mounts() -> list[str]:
    """Mount points of tracefs, from /proc/self/mounts (the kernel's own list)."""
    points = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "tracefs":
                    # the kernel escapes spaces and the like as octal (\040)
                    points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1]))
    except OSError:
        pass
    return points


def _mount_tracefs(target: str) -> None:
    """mount -t tracefs nodev TARGET, through libc (no dependency on mount(8))."""
    rc = libc().mount(b"nodev", target.encode(), b"tracefs", ctypes.c_ulong(0), None)
    if rc != 0:
        err = ctypes.get_errno()
        raise CaptureError(f"cannot mount tracefs at {target}: {os.strerror(err)}")


def find_tracefs(*, mount: bool = True) -> str:
    """The tracefs mount point, mounting it at /sys/kernel/tracing when needed.

    Mounting needs root; without it, or when the kernel has no tracefs, the
    :class:`CaptureError` says what to do.
    """
    points = _tracefs_mounts()
    for preferred in (DEFAULT_MOUNT, LEGACY_MOUNT):
        if preferred in points:
            return preferred
    if points:
        return points[0]
    if not mount:
        raise CaptureError(f"tracefs is not mounted (mount -t tracefs nodev {DEFAULT_MOUNT})")
    if os.geteuid() != 0:
        raise CaptureError(f"tracefs is not mounted and mounting it needs root "
                           f"(as root: mount -t tracefs nodev {DEFAULT_MOUNT})")
    if not os.path.isdir(DEFAULT_MOUNT):
        raise CaptureError(f"{DEFAULT_MOUNT} does not exist: this kernel has no tracefs (CONFIG_TRACING)")
    _mount_tracefs(DEFAULT_MOUNT)
    return DEFAULT_MOUNT


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,5' -> [0, 1, 2, 3, 5]: the kernel's cpulist format, also report's ``--cpu``
    (ValueError for a part that is not a number or a range)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def own_thread_ids() -> list[int]:
    """The thread ids of this process (``/proc/self/task``): what the pid files of tracefs match."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task") if t.isdigit())
    except OSError:
        return [threading.get_native_id()]  # no /proc: at least the calling thread


def _owner_running(pid: int, start: int | None) -> bool:
    """Whether the process that made a name with ``pid`` (and ``start``, when the name has
    it) still runs: a pid reused by another process does not count."""
    if start is None:  # a name of the older scheme: the pid is all we have
        return pid == os.getpid() or pid_alive(pid)
    now = process_start_time(pid)
    if now is None:  # no such process, or /proc does not say: the pid decides
        return pid_alive(pid)
    return now == start


# --------------------------------------------------------------------------- TraceFS

@dataclass(frozen=True)
class UprobeEntry:
    """One line of ``uprobe_events``: ``p:GROUP/EVENT PATH:OFFSET ARGS``."""

    kind: str  # "p" or "r"
    group: str
    event: str
    definition: str  # the rest of the line

    @classmethod
    def parse(cls, line: str) -> "UprobeEntry | None":
        head, _, rest = line.strip().partition(" ")
        kind, sep, name = head.partition(":")
        group, slash, event = name.partition("/")
        if not sep or not slash:
            return None
        return cls(kind, group, event, rest)


class TraceFS:
    """The tracefs mount: its files, available events and instances.

    Reads go to the top level, which never needs changing: tracewatch writes
    only inside its own instances and to ``uprobe_events`` for its own groups.
    """

    def __init__(self, path: str | None = None, *, mount: bool = True) -> None:
        self.path = path or find_tracefs(mount=mount)
        instances = os.path.join(self.path, "instances")
        try:
            os.stat(instances)
        except PermissionError:
            # tracefs is mode 750 root: for others, instances/ is not missing but out of reach
            raise CaptureError(f"cannot reach {instances}: permission denied; tracewatch needs root "
                               f"(or CAP_PERFMON and access to tracefs)") from None
        except OSError:
            raise CaptureError(f"{self.path}: no instances/ directory; tracewatch needs tracefs instances") from None
        self._available: list[str] | None = None

    def __repr__(self) -> str:
        return f"TraceFS({self.path!r})"

    # -- files
    def file(self, rel: str) -> str:
        return os.path.join(self.path, rel)

    def read(self, rel: str) -> str:
        try:
            with open(self.file(rel)) as f:
                return f.read()
        except OSError as e:
            raise CaptureError(f"cannot read {self.file(rel)}: {e.strerror}") from None

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.file(rel))

    # -- what the kernel offers
    @property
    def cpus(self) -> list[int]:
        """Online CPUs that have a per-CPU ring buffer."""
        try:
            with open("/sys/devices/system/cpu/online") as f:
                online = parse_cpu_list(f.read())
        except OSError:
            online = sorted(int(d[3:]) for d in os.listdir(self.file("per_cpu")) if d[3:].isdigit())
        return [c for c in online if os.path.isdir(self.file(f"per_cpu/cpu{c}"))]

    def available_events(self, *, refresh: bool = False) -> list[str]:
        """Every event the kernel can trace, as ``system:event``."""
        if self._available is None or refresh:
            self._available = [ln.strip() for ln in self.read("available_events").splitlines() if ":" in ln]
        return self._available

    def list_events(self, glob: str = "*") -> list[str]:
        """Events matching ``glob`` (see :func:`expand_event_globs`), sorted."""
        return sorted(expand_event_globs([glob], self.available_events(refresh=True), allow_empty=True))

    def event_format(self, system: str, name: str) -> EventFormat:
        rel = f"events/{system}/{name}/format"
        return parse_event_format(self.read(rel), system, source=self.file(rel))

    def header_page(self) -> HeaderPage:
        return HeaderPage.parse(self.read("events/header_page"))

    def instance_names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.file("instances")))
        except OSError as e:
            raise CaptureError(f"cannot list {self.file('instances')}: {e.strerror}") from None

    def uprobes(self) -> list[UprobeEntry]:
        """The current ``uprobe_events`` entries (all owners)."""
        if not self.exists("uprobe_events"):
            return []
        out = []
        for line in self.read("uprobe_events").splitlines():
            entry = UprobeEntry.parse(line)
            if entry:
                out.append(entry)
        return out

    def remove_uprobe(self, group: str, event: str) -> bool:
        """Delete one uprobe event; False when the kernel refuses (still enabled somewhere)."""
        try:
            _append(self.file("uprobe_events"), f"-:{group}/{event}\n")
        except OSError:
            return False
        return True

    def remove_uprobe_group(self, group: str) -> list[str]:
        """Delete every uprobe event of ``group``; return the events that are left.

        One ``-:GROUP/`` line deletes the whole group (each deletion resets the
        ring buffers and waits for them: one per probe made removing thousands
        take minutes).  Where the kernel refuses (an event still enabled somewhere, a
        kernel without group deletion), the events are deleted one by one.
        """
        mine = [u.event for u in self.uprobes() if u.group == group]
        if not mine:
            return []
        try:
            _append(self.file("uprobe_events"), f"-:{group}/\n")
        except OSError:
            pass
        left = [u.event for u in self.uprobes() if u.group == group]
        return [event for event in left if not self.remove_uprobe(group, event)]

    def cleanup_stale(self) -> list[str]:
        return cleanup_stale(self)


def expand_event_globs(patterns: Iterable[str], available: list[str], *, allow_empty: bool = False) -> list[str]:
    """Expand event patterns against ``available`` (``system:event`` names).

    A pattern is ``system:event`` with shell globs in either part
    (``sched:*``, ``*:sys_enter``), or one word: a system name (``sched``:
    all its events) or else an event name in any system (``sched_switch``).
    A pattern that matches nothing raises :class:`CaptureError` with the
    closest names, unless ``allow_empty``.
    """
    systems = sorted({a.partition(":")[0] for a in available})
    out: list[str] = []
    seen: set[str] = set()
    for pat in patterns:
        pat = pat.strip()
        if ":" in pat or "/" in pat:
            sys_pat, _, ev_pat = pat.replace("/", ":", 1).partition(":")
            ev_pat = ev_pat or "*"
            hits = [a for a in available
                    if fnmatch.fnmatchcase(a.partition(":")[0], sys_pat)
                    and fnmatch.fnmatchcase(a.partition(":")[2], ev_pat)]
        elif any(fnmatch.fnmatchcase(s, pat) for s in systems):
            hits = [a for a in available if fnmatch.fnmatchcase(a.partition(":")[0], pat)]
        else:
            hits = [a for a in available if fnmatch.fnmatchcase(a.partition(":")[2], pat)]
        if not hits and not allow_empty:
            raise CaptureError(unknown_event_message(pat, available))
        for h in hits:
            if h not in seen:
                seen.add(h)
                out.append(h)
    return out


def unknown_event_message(pat: str, available: list[str], *,
                          listing: str = "tracewatch list shows the available events") -> str:
    """'unknown event X; did you mean A, B?' with difflib's closest names in ``available``
    (``listing`` says where to look when none is close)."""
    systems = sorted({a.partition(":")[0] for a in available})
    candidates: list[str] = []
    if ":" in pat:
        candidates = difflib.get_close_matches(pat, available, n=3, cutoff=0.6)
        sys_pat, _, ev_pat = pat.partition(":")
        if not candidates:
            # the event name alone may be right with the wrong system, or the reverse
            names = {a.partition(":")[2]: a for a in available}
            candidates = [names[n] for n in difflib.get_close_matches(ev_pat, list(names), n=3, cutoff=0.75)]
        if not candidates:
            candidates = [s + ":*" for s in difflib.get_close_matches(sys_pat, systems, n=3, cutoff=0.6)]
    else:
        candidates = difflib.get_close_matches(pat, systems, n=2, cutoff=0.6)
        names = {a.partition(":")[2]: a for a in available}
        candidates += [names[n] for n in difflib.get_close_matches(pat, list(names), n=3, cutoff=0.6)]
    msg = f"unknown event {pat!r}"
    if candidates:
        msg += "; did you mean " + ", ".join(candidates[:3]) + "?"
    else:
        msg += f" ({listing})"
    return msg


def _write(path: str, text: str) -> None:
    """Write a control file in one write(2), truncating (what `echo X > file` does)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _append(path: str, text: str) -> None:
    """Append to a control file (uprobe_events: O_TRUNC would delete every probe)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _blocks(lines: list[tuple[str, str]], max_bytes: int) -> Iterable[list[tuple[str, str]]]:
    """``(name, line)`` pairs in runs whose lines take at most ``max_bytes`` (at least one line each)."""
    block: list[tuple[str, str]] = []
    size = 0
    for item in lines:
        if block and size + len(item[1]) + 1 > max_bytes:
            yield block
            block, size = [], 0
        block.append(item)
        size += len(item[1]) + 1
    if block:
        yield block


def _warn_refused(names: list[str]) -> None:
    """Say on stderr which probes the kernel cannot enable (they are skipped, the run goes on)."""
    shown = ", ".join(n.partition(":")[2] for n in names[:10]) + (", ..." if len(names) > 10 else "")
    print(f"tracewatch: warning: skipped {len(names)} probe{'s' if len(names) != 1 else ''} the kernel "
          f"cannot enable (error {ENOTSUPP}, ENOTSUPP): {shown}", file=sys.stderr)


# --------------------------------------------------------------------------- cleanup registry

# Instances of this process not yet closed, for atexit and the signal handlers.
# Strong references: an instance dropped without close() must still be removed.
_open_instances: dict[str, "Instance"] = {}
_registry_lock = threading.RLock()
_handlers_installed = False
_previous_handlers: dict[int, object] = {}
_CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def _close_all_instances() -> None:
    with _registry_lock:
        instances = list(_open_instances.values())
    for inst in instances:
        try:
            inst.close()
        except Exception:  # cleanup at exit must go on with the others
            pass


def _on_signal(signum: int, frame) -> None:  # noqa: ANN001 (signal handler signature)
    """Chain to the previous handler; clean up first when that would kill us outright."""
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        # Python's SIGINT handler raises KeyboardInterrupt, which unwinds through
        # `with Instance()` / LiveSource (drain, final report) and then atexit.
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # SIG_DFL of SIGTERM/SIGHUP terminates without unwinding: clean up now, then
    # die of the same signal so the parent sees what it asked for.
    _close_all_instances()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back while tracing state is being removed.

    A second Ctrl-C (or a SIGTERM) during a teardown would otherwise stop it
    half way and leave probes or an instance behind.  Each signal that came
    is sent again once the block is done, to the handler that was in force.
    Python runs signal handlers in the main thread only, so elsewhere this
    holds nothing (and has nothing to hold).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    replaced: dict[int, object] = {}
    for sig in _CLEANUP_SIGNALS:
        try:
            previous = signal.getsignal(sig)
            if previous is None:  # a handler installed from C: leave it alone
                continue
            signal.signal(sig, lambda signum, frame: held.append(signum))
            replaced[sig] = previous
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, previous in replaced.items():
            signal.signal(sig, previous)
        for sig in dict.fromkeys(held):
            os.kill(os.getpid(), sig)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_close_all_instances)
    if threading.current_thread() is not threading.main_thread():
        return  # signal.signal works only in the main thread; atexit still covers normal exits
    for sig in _CLEANUP_SIGNALS:
        try:
            prev = signal.getsignal(sig)
            if prev is None:  # installed from C; we cannot chain to it, so leave it alone
                continue
            _previous_handlers[sig] = prev
            signal.signal(sig, _on_signal)
        except (ValueError, OSError):
            pass


# --------------------------------------------------------------------------- Instance

_instance_counter = itertools.count()


class Instance:
    """A private tracefs instance, ``instances/tracewatch-<pid>-<start>-<n>``.

    It has its own ring buffers, enabled events, filters and options, so a
    user's own tracing (and other tracewatch runs) are never disturbed.  Use it
    as a context manager; ``close()`` stops tracing, disables what it enabled,
    clears its filters and pid lists, removes the uprobes it added and removes
    the instance directory.  Closing is idempotent and also happens at exit and
    on SIGTERM/SIGHUP (see the module docstring).

    Tracing starts off (``tracing_on`` 0) so that nothing is recorded before a
    reader is attached; :class:`~tracewatch.sources.live.LiveSource` turns it on.
    """

    def __init__(self, tracefs: TraceFS | None = None, *, clean_stale: bool = True) -> None:
        self.tracefs = tracefs or TraceFS()
        if clean_stale:
            cleanup_stale(self.tracefs)
        self.owner_pid = os.getpid()
        self._closed = False
        self._enabled: list[str] = []  # system:event, in the order enabled
        self._filtered: set[str] = set()
        self._not_traced: set[int] = set()  # task ids written to set_event_notrace_pid
        self._uprobes: list[tuple[str, str]] = []  # (group, event)
        self._uprobes_written = False  # a write to uprobe_events was begun: close removes the group
        self._closers: list[Callable[[], None]] = []  # readers to close before rmdir
        self._formats: dict[tuple[str, str], EventFormat] = {}
        self.last_error: str | None = None
        _install_handlers()
        self._enabled_groups: list[str] = []  # systems enabled through events/GROUP/enable
        self.refused_probes: list[str] = []  # group:event the kernel cannot enable (ENOTSUPP)
        self.name, self.path = self._mkdir()
        self.uprobe_group = UPROBE_GROUP_PREFIX + self.name[len(INSTANCE_PREFIX):].replace("-", "_")
        with _registry_lock:
            _open_instances[self.name] = self
        try:
            self.tracing_on = False
        except BaseException:
            self.close()
            raise

    def _mkdir(self) -> tuple[str, str]:
        base = self.tracefs.file("instances")
        pid = os.getpid()
        start = process_start_time(pid)
        owner = f"{pid}-{start}" if start is not None else str(pid)  # no /proc: the older scheme
        for _ in range(1000):
            name = f"{INSTANCE_PREFIX}{owner}-{next(_instance_counter)}"
            path = os.path.join(base, name)
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            except PermissionError:
                raise CaptureError(f"cannot create a tracing instance in {base}: permission denied "
                                   f"(tracewatch needs root, or CAP_PERFMON and access to tracefs)") from None
            except OSError as e:
                raise CaptureError(f"cannot create a tracing instance in {base}: {e.strerror}") from None
            return name, path
        raise CaptureError(f"cannot create a tracing instance in {base}: every name is taken")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Instance {self.name} ({state})>"

    def __enter__(self) -> "Instance":
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        try:
            self.close()
        except CaptureError:
            if exc_type is None:
                raise  # else the error already on its way out is the one to report

    @property
    def closed(self) -> bool:
        return self._closed

    # -- files
    def file(self, rel: str) -> str:
        return os.path.join(self.path, rel)

    def read(self, rel: str) -> str:
        self._check_open()
        try:
            with open(self.file(rel)) as f:
                return f.read()
        except OSError as e:
            raise CaptureError(f"cannot read {self.file(rel)}: {e.strerror}") from None

    def write(self, rel: str, text: str) -> None:
        self._check_open()
        try:
            _write(self.file(rel), text)
        except OSError as e:
            raise CaptureError(f"cannot write {text.strip()!r} to {self.file(rel)}: {e.strerror}") from None

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.file(rel))

    def _check_open(self) -> None:
        if self._closed:
            raise CaptureError(f"tracing instance {self.name} is already closed")

    # -- events
    def list_events(self, glob: str = "*") -> list[str]:
        return self.tracefs.list_events(glob)

    def enable(self, events: str | Iterable[str]) -> list[str]:
        """Enable events given as globs (``sched:*``, ``raw_syscalls:sys_enter``).

        Returns the ``system:event`` names enabled.  An unknown event raises
        :class:`CaptureError` naming the closest available ones, before
        anything is enabled.
        """
        patterns = [events] if isinstance(events, str) else list(events)
        names = expand_event_globs(patterns, self.tracefs.available_events(refresh=True))
        refused_before = len(self.refused_probes)
        ours = {f"{group}:{event}" for group, event in self._uprobes}
        if ours and ours.issubset(names):
            # every probe of ours: one write to the group's enable file in this instance
            # instead of one per event (the other instances' events are not touched)
            self._enable_probe_group([n for n in names if n in ours])
            rest = [n for n in names if n not in ours]
        else:
            rest = names
        for full in rest:
            self._enable_event(full)
        refused = set(self.refused_probes[refused_before:])
        if refused and refused.issuperset(names):
            raise CaptureError(f"the kernel cannot enable any of the {len(names)} probes "
                               f"(error {ENOTSUPP}, ENOTSUPP: it cannot place a breakpoint there)")
        if refused:
            _warn_refused(sorted(refused))
        return [n for n in names if n not in refused]

    def _enable_event(self, full: str) -> None:
        """Enable one event; a probe of ours the kernel cannot place is noted in ``refused_probes``."""
        system, _, event = full.partition(":")
        path = self.file(f"events/{system}/{event}/enable")
        self._check_open()
        try:
            _write(path, "1")
        except OSError as e:
            if e.errno == ENOTSUPP and system == self.uprobe_group:
                # bcc's funccount skips these too: one unprobeable function is no reason to stop
                self.refused_probes.append(full)
                return
            raise CaptureError(f"cannot write '1' to {path}: {e.strerror}") from None
        if full not in self._enabled:
            self._enabled.append(full)

    def _enable_probe_group(self, names: list[str]) -> None:
        """Enable every event of this instance's uprobe group (``names``) with one write."""
        self._check_open()
        group = self.uprobe_group
        if group not in self._enabled_groups:
            self._enabled_groups.append(group)  # before the write: close() must undo a half-done one
        try:
            _write(self.file(f"events/{group}/enable"), "1")
        except OSError:
            # the kernel went through all of them and returns the first failure: the ones
            # still off are tried alone, to skip those it cannot place and report the others
            on = set(self.enabled_events)
            for full in names:
                if full not in on:
                    self._enable_event(full)
        enabled = set(self._enabled)
        refused = set(self.refused_probes)
        self._enabled += [n for n in names if n not in enabled and n not in refused]

    def disable(self, events: str | Iterable[str] | None = None) -> None:
        """Disable the given events (globs), or every event this instance enabled."""
        if events is None:
            names = list(self._enabled)
        else:
            patterns = [events] if isinstance(events, str) else list(events)
            names = expand_event_globs(patterns, self.tracefs.available_events(), allow_empty=True)
        for full in names:
            system, _, event = full.partition(":")
            if self.exists(f"events/{system}/{event}/enable"):
                self.write(f"events/{system}/{event}/enable", "0")
            if full in self._enabled:
                self._enabled.remove(full)
            if system in self._enabled_groups:
                self._enabled_groups.remove(system)  # no longer all on: close disables one by one

    @property
    def enabled_events(self) -> list[str]:
        """What the kernel says is enabled in this instance (``set_event``)."""
        return [ln.strip() for ln in self.read("set_event").splitlines() if ln.strip()]

    def set_filter(self, event: str, expr: str) -> bool:
        """Install an ftrace filter on one event (``system:event``).

        Returns False, without raising, when the kernel rejects the expression
        (unknown field, bad syntax...): the event stays unfiltered and
        ``last_error`` holds the kernel's explanation from ``error_log``, so the
        caller can filter in Python instead.
        """
        system, _, name = event.partition(":")
        rel = f"events/{system}/{name}/filter"
        if not self.exists(rel):
            raise CaptureError(f"cannot filter unknown event {event!r}")
        self._clear_error_log()
        self._filtered.add(event)
        try:
            _write(self.file(rel), expr + "\n")
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSPC, errno.E2BIG, errno.ENOENT):
                raise CaptureError(f"cannot set filter on {event}: {e.strerror}") from None
            self.last_error = self._last_error_log_entry() or e.strerror
            self.clear_filter(event)
            return False
        self.last_error = None
        return True

    def clear_filter(self, event: str) -> None:
        system, _, name = event.partition(":")
        rel = f"events/{system}/{name}/filter"
        if self.exists(rel):
            self.write(rel, "0")
        self._filtered.discard(event)

    def filter(self, event: str) -> str:
        """The filter in force on ``event`` ('none' when there is none)."""
        system, _, name = event.partition(":")
        return self.read(f"events/{system}/{name}/filter").strip()

    def _clear_error_log(self) -> None:
        if self.exists("error_log"):
            try:
                _write(self.file("error_log"), "")
            except OSError:
                pass

    def _last_error_log_entry(self) -> str | None:
        """The newest error_log entry, on one line: 'event filter parse error: ... (Command: ...)'."""
        if not self.exists("error_log"):
            return None
        try:
            text = self.read("error_log")
        except CaptureError:
            return None
        entries = re.split(r"^\[\s*[\d.]+\]\s*", text, flags=re.M)
        entries = [e for e in entries if e.strip()]
        if not entries:
            return None
        lines = [ln.strip() for ln in entries[-1].splitlines() if ln.strip() and ln.strip() != "^"]
        return " ".join(lines)

    def event_format(self, system: str, name: str) -> EventFormat:
        """The format of ``system:name`` (cached; formats do not change while it exists)."""
        key = (system, name)
        if key not in self._formats:
            rel = f"events/{system}/{name}/format"
            if not self.exists(rel):
                raise CaptureError(f"no format for event {system}:{name} in {self.path}")
            self._formats[key] = parse_event_format(self.read(rel), system, source=self.file(rel))
        return self._formats[key]

    def header_page(self) -> HeaderPage:
        """This instance's page layout; its data size follows ``buffer_subbuf_size_kb``."""
        return HeaderPage.parse(self.read("events/header_page"))

    # -- buffer and clock settings
    @property
    def cpus(self) -> list[int]:
        return self.tracefs.cpus

    @property
    def tracing_on(self) -> bool:
        return self.read("tracing_on").strip() == "1"

    @tracing_on.setter
    def tracing_on(self, on: bool) -> None:
        self.write("tracing_on", "1" if on else "0")

    @property
    def buffer_size_kb(self) -> int:
        """Per-CPU ring-buffer size in KiB (write before reading starts: mmap pins it)."""
        text = self.read("buffer_size_kb").strip()
        return int(text.split()[0])  # "1410 (expanded: 1410)" on some kernels

    @buffer_size_kb.setter
    def buffer_size_kb(self, kb: int) -> None:
        self.write("buffer_size_kb", str(int(kb)))

    @property
    def has_subbuf_size(self) -> bool:
        return self.exists("buffer_subbuf_size_kb")

    @property
    def subbuf_size_kb(self) -> int:
        """Size of one ring-buffer page ("sub-buffer") in KiB; 4 where the kernel cannot change it."""
        if not self.has_subbuf_size:
            return 4
        return int(self.read("buffer_subbuf_size_kb").strip())

    @subbuf_size_kb.setter
    def subbuf_size_kb(self, kb: int) -> None:
        if not self.has_subbuf_size:
            raise CaptureError("this kernel cannot change the sub-buffer size (no buffer_subbuf_size_kb)")
        self._check_open()
        try:
            _write(self.file("buffer_subbuf_size_kb"), str(int(kb)))
        except OSError as e:
            if e.errno in (errno.EPERM, errno.EACCES):
                raise CaptureError(f"this kernel does not allow changing the sub-buffer size "
                                   f"(buffer_subbuf_size_kb: {e.strerror})") from None
            raise CaptureError(f"cannot set the sub-buffer size to {int(kb)} KB "
                               f"(buffer_subbuf_size_kb: {e.strerror})") from None

    def subbuf_size_unchangeable(self) -> str | None:
        """Why this kernel does not let the sub-buffer size change (the file is missing, or
        writing it is refused even as root), or None when it does.  Probed by writing the
        size in force back."""
        if not self.has_subbuf_size:
            return "no buffer_subbuf_size_kb"
        try:
            self.subbuf_size_kb = self.subbuf_size_kb
        except CaptureError as e:
            return str(e)
        return None

    @property
    def trace_clock(self) -> str:
        """The clock in force ('local', 'global', 'mono', ...)."""
        m = re.search(r"\[(\S+)\]", self.read("trace_clock"))
        return m.group(1) if m else self.read("trace_clock").split()[0]

    @trace_clock.setter
    def trace_clock(self, clock: str) -> None:
        available = self.available_clocks
        if clock not in available:
            raise CaptureError(f"unknown trace clock {clock!r}; available: {', '.join(available)}")
        self.write("trace_clock", clock)

    @property
    def available_clocks(self) -> list[str]:
        return [c.strip("[]") for c in self.read("trace_clock").split()]

    @property
    def buffer_percent(self) -> int:
        """How full (percent) a CPU buffer gets before a blocked reader / poll wakes."""
        if not self.exists("buffer_percent"):
            return 0
        return int(self.read("buffer_percent").strip())

    @buffer_percent.setter
    def buffer_percent(self, percent: int) -> None:
        if not self.exists("buffer_percent"):
            if percent:
                raise CaptureError("this kernel has no buffer_percent; readers wake on any data")
            return
        self.write("buffer_percent", str(int(percent)))

    def option(self, name: str) -> bool:
        return self.read(f"options/{name}").strip() == "1"

    def set_option(self, name: str, on: bool) -> None:
        if not self.exists(f"options/{name}"):
            raise CaptureError(f"this kernel has no trace option {name!r}")
        self.write(f"options/{name}", "1" if on else "0")

    # -- pids
    def follow_pids(self, pids: Iterable[int], *, children: bool = True) -> None:
        """Record events only of these pids (``set_event_pid``), and of their
        future children too when ``children`` (the ``event-fork`` option)."""
        pids = [int(p) for p in pids]
        self.write("set_event_pid", " ".join(map(str, pids)) + "\n")
        if self.exists("options/event-fork"):
            self.set_option("event-fork", children)
        elif children:
            raise CaptureError("this kernel cannot follow forks of traced pids (no options/event-fork)")

    @property
    def event_pids(self) -> list[int]:
        return [int(p) for p in self.read("set_event_pid").split()]

    def clear_pids(self) -> None:
        self.write("set_event_pid", "")
        if self.exists("options/event-fork"):
            self.set_option("event-fork", False)

    @property
    def can_exclude_pids(self) -> bool:
        """Whether this kernel can leave tasks out of event tracing (``set_event_notrace_pid``)."""
        return self.exists("set_event_notrace_pid")

    def exclude_pids(self, pids: Iterable[int]) -> bool:
        """Record no events of these tasks (``set_event_notrace_pid``), added to those already excluded.

        The kernel matches task pids, that is thread ids: exclude every thread
        of a process (:func:`own_thread_ids` for this one).  Exclusion wins over
        :meth:`follow_pids`.  While the ``event-fork`` option is on (``follow_pids``
        with children), a task that an excluded one starts is excluded too:
        start whatever must be traced before excluding its parent.  Returns
        False, and does nothing, where the kernel has no ``set_event_notrace_pid``.
        """
        self._check_open()
        if not self.can_exclude_pids:
            return False
        new = sorted({int(p) for p in pids} - self._not_traced)
        if new:
            # appended, not rewritten: opening with O_TRUNC empties the list until the write
            # lands, and the tasks already excluded would be traced in between
            try:
                _append(self.file("set_event_notrace_pid"), " ".join(map(str, new)) + "\n")
            except OSError as e:
                raise CaptureError(f"cannot exclude pids {' '.join(map(str, new))} from tracing "
                                   f"in {self.name}: {e.strerror}") from None
            self._not_traced.update(new)
        return True

    @property
    def excluded_pids(self) -> list[int]:
        """The tasks the kernel leaves out of event tracing (``set_event_notrace_pid``)."""
        if not self.can_exclude_pids:
            return []
        return [int(p) for p in self.read("set_event_notrace_pid").split()]

    # -- statistics
    def per_cpu_stats(self, cpu: int) -> dict[str, float]:
        """``per_cpu/cpuN/stats`` as a dict with underscore keys.

        ``entries`` (events in the buffer), ``overrun`` (overwritten, lost),
        ``commit_overrun`` (lost to nested writes), ``dropped_events`` (lost when
        the buffer does not overwrite), ``read_events``, ``bytes``, and the
        times ``oldest_event_ts`` / ``now_ts`` in seconds.
        """
        out: dict[str, float] = {}
        for line in self.read(f"per_cpu/cpu{cpu}/stats").splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key = key.strip().replace(" ", "_")
            value = value.strip()
            try:
                out[key] = float(value) if "." in value else int(value)
            except ValueError:
                continue
        return out

    def lost_events(self) -> int:
        """Events the kernel could not keep, over all CPUs (overrun + commit overrun + dropped)."""
        total = 0
        for cpu in self.cpus:
            s = self.per_cpu_stats(cpu)
            total += int(s.get("overrun", 0)) + int(s.get("commit_overrun", 0)) + int(s.get("dropped_events", 0))
        return total

    # -- uprobes
    def add_uprobe(self, event: str, location: str, fetchargs: str = "", *, ret: bool = False) -> str:
        """Define a uprobe (``p:``, or ``r:`` with ``ret``) at ``PATH:OFFSET`` in
        this instance's group and return its ``group:event`` name (enable it
        with :meth:`enable`).  It is removed on close."""
        return self.add_uprobes([(event, location, fetchargs, ret)])[0]

    def add_uprobes(self, probes: Iterable[tuple[str, str, str, bool]]) -> list[str]:
        """Define uprobes ``(event, location, fetchargs, ret)`` in this instance's group;
        return their ``group:event`` names.  They are removed on close.

        The kernel takes a write to ``uprobe_events`` line by line, so the
        definitions go in blocks of many lines per write (one write per probe
        made thousands take a minute).  It stops at a line it rejects, keeping
        the ones before: those are listed back from ``uprobe_events`` to name
        the rejected one in the :class:`CaptureError`.
        """
        self._check_open()
        if not self.tracefs.exists("uprobe_events"):
            raise CaptureError("this kernel has no uprobes (no uprobe_events in tracefs)")
        group = self.uprobe_group
        lines: list[tuple[str, str]] = []  # (event, definition)
        for event, location, fetchargs, ret in probes:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", event):
                raise CaptureError(f"bad uprobe event name {event!r}: use letters, digits and _")
            lines.append((event, f"{'r' if ret else 'p'}:{group}/{event} {location} {fetchargs}".rstrip()))
        path = self.tracefs.file("uprobe_events")
        for block in _blocks(lines, _UPROBE_BLOCK_BYTES):
            # from here on close() removes the whole group, even if a signal cuts this short
            self._uprobes_written = True
            try:
                _append(path, "".join(line + "\n" for _, line in block))
            except OSError as e:
                made = {u.event for u in self.tracefs.uprobes() if u.group == group}
                self._uprobes += [(group, event) for event, _ in block if event in made]
                bad = next((line for event, line in block if event not in made), block[0][1])
                detail = self._uprobe_error(bad) or e.strerror
                raise CaptureError(f"the kernel rejected uprobe {bad!r}: {detail}") from None
            self._uprobes += [(group, event) for event, _ in block]
        self.tracefs.available_events(refresh=True)
        return [f"{group}:{event}" for event, _ in lines]

    def _uprobe_error(self, line: str) -> str | None:
        """The kernel's explanation of why it rejected ``line``: the newest entry of the top-level
        ``error_log`` (where dynamic-event errors go) if it is about that line."""
        try:
            text = self.tracefs.read("error_log")
        except CaptureError:
            return None
        entries = [e for e in re.split(r"^\[\s*[\d.]+\]\s*", text, flags=re.M) if e.strip()]
        if not entries or line.split(" ", 1)[0] not in entries[-1]:
            return None  # none, or another program's error
        return " ".join(ln.strip() for ln in entries[-1].splitlines() if ln.strip() and ln.strip() != "^")

    # -- teardown
    def attach_closer(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` first on close: open readers keep the instance busy (rmdir: EBUSY)."""
        self._closers.append(closer)

    def detach_closer(self, closer: Callable[[], None]) -> None:
        if closer in self._closers:
            self._closers.remove(closer)

    def close(self) -> None:
        """Stop tracing and remove everything this instance set up.  Idempotent.

        A forked child inherits the object (and atexit) but not the ownership:
        only the creating process tears down.
        """
        if self._closed or os.getpid() != self.owner_pid:
            return
        self._closed = True
        with _signals_held():
            self._teardown()

    def _teardown(self) -> None:
        problems: list[str] = []

        def attempt(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as e:  # every step is tried; the first failure is reported
                problems.append(f"{what}: {e}")

        attempt("stop tracing", lambda: _write(self.file("tracing_on"), "0"))
        for closer in reversed(self._closers):
            attempt("close reader", closer)
        self._closers.clear()
        probes_on = sum(1 for full in self._enabled if full.startswith(self.uprobe_group + ":"))
        if probes_on >= _SLOW_DISABLE_NOTE:
            # ~50 ms each (the kernel waits for an RCU grace period per probe event), signals held
            print(f"tracewatch: removing {probes_on} probes; the kernel takes a while for each",
                  file=sys.stderr, flush=True)
        for group in self._enabled_groups:
            attempt(f"disable {group}:*", lambda g=group: _write(self.file(f"events/{g}/enable"), "0"))
        for full in reversed(self._enabled):
            system, _, event = full.partition(":")
            if system in self._enabled_groups:
                continue
            attempt(f"disable {full}", lambda s=system, e=event: _write(self.file(f"events/{s}/{e}/enable"), "0"))
        for full in sorted(self._filtered):
            system, _, event = full.partition(":")
            attempt(f"clear filter {full}", lambda s=system, e=event: _write(self.file(f"events/{s}/{e}/filter"), "0"))
        attempt("clear set_event_pid", lambda: _write(self.file("set_event_pid"), ""))
        if self._not_traced:
            attempt("clear set_event_notrace_pid", lambda: _write(self.file("set_event_notrace_pid"), ""))
            self._not_traced.clear()
        self._enabled.clear()
        self._enabled_groups.clear()
        self._filtered.clear()
        # the instance first: removing it disables whatever of ours is still on in it
        attempt("remove instance", lambda: _rmdir_instance(self.path))
        if self._uprobes_written:
            # the whole group, as the kernel lists it: a definition cut short by a signal
            # may have made probes that self._uprobes does not know of yet
            try:
                left = self.tracefs.remove_uprobe_group(self.uprobe_group)
            except CaptureError as e:
                left = [str(e)]
            if left:
                problems.append(f"remove uprobes {self.uprobe_group}/{left[0]}: still in use")
        self._uprobes.clear()
        with _registry_lock:
            _open_instances.pop(self.name, None)
        if problems:
            raise CaptureError(f"cleaning up {self.name}: {problems[0]}")


def _rmdir_instance(path: str) -> None:
    """rmdir an instance, retrying briefly: a just-closed reader may hold it for a moment."""
    for attempt in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or attempt == 49:
                raise CaptureError(f"cannot remove {path}: {e.strerror}") from None
            time.sleep(0.01)


# --------------------------------------------------------------------------- stale cleanup

def cleanup_stale(tracefs: TraceFS | None = None) -> list[str]:
    """Remove what killed tracewatch runs left behind; return what was removed.

    Instances ``tracewatch-<pid>-<start>-*`` and uprobe groups
    ``tracewatch_<pid>_<start>_*`` whose owner no longer runs (no process
    ``pid``, or one started at another time: the pid was reused; names
    without ``<start>`` go by the pid alone): stop them, clear their events and pid
    lists, remove the instance, then the uprobes (which the instance's removal
    disabled).  Instances of running processes, including this one, are left
    alone.
    """
    tfs = tracefs or TraceFS()
    removed: list[str] = []
    for name in tfs.instance_names():
        m = _INSTANCE_RE.match(name)
        if not m:
            continue
        if _owner_running(int(m.group(1)), int(m.group(2)) if m.group(2) else None):
            continue
        path = tfs.file(f"instances/{name}")
        for rel, text in (("tracing_on", "0"), ("set_event", ""), ("set_event_pid", ""),
                          ("set_event_notrace_pid", "")):
            try:
                _write(os.path.join(path, rel), text)
            except OSError:
                pass
        try:
            _rmdir_instance(path)
            removed.append(f"instance {name}")
        except CaptureError:
            continue  # another cleaner got it, or it is busy: try again next start
    entries = tfs.uprobes()
    for group in dict.fromkeys(entry.group for entry in entries):
        m = _UPROBE_GROUP_RE.match(group)
        if not m:
            continue
        if _owner_running(int(m.group(1)), int(m.group(2)) if m.group(2) else None):
            continue
        left = set(tfs.remove_uprobe_group(group))
        removed += [f"uprobe {group}/{entry.event}" for entry in entries
                    if entry.group == group and entry.event not in left]
    if removed:
        tfs.available_events(refresh=True)
    return removed
