"""Flight-recorder dumps: pages from the ring (and the post window) to a trace.dat plus a JSON sidecar.

Life of a dump::

    FlightRecorder.trigger(reason, ts)           a handler called dump(), or SIGUSR1
      -> DumpWriter.admit()                      cooldown? disk nearly full? (counted, not dumped)
      -> PendingDump                             the ring's pages are held in place (PageRing.hold): no copy
      -> PendingDump.feed(cpu, pages)            every page batch read after the trigger
      -> PendingDump.finish()                    trace time passed trigger + after: trim, write (writev
                                                 from the ring's slab), rename, fsync
      -> DumpWriter._completed()                 sidecar JSON, rotation (--max-dumps)

The post window ends at ``trigger_ts + after`` (inclusive) and nothing after
it goes in the file.  Pages are whole units for trace-cmd and KernelShark, so
pages whose events are all later are dropped, and the one page that straddles
the end is cut: its ``commit`` is rewritten to end after the last event in the
window (flag bits kept; a stored lost-events count moves to the new end of
data).  The bytes after the new commit are left as they were: every reader
stops at ``commit``, as it does for the stale bytes the kernel leaves there.
At the start the dump begins with whole pages: the first page of a CPU may
hold events a little older than ``trigger - before``, never fewer.

Files: ``<UTC time of the trigger>-<slug of the reason>.dat`` and ``.json``
beside it (``20261130T071502.123Z-nginx-failing.dat``).  Both are written under
a temporary name and renamed, the .dat first, so a .json always describes a
complete .dat.  Rotation deletes the oldest pairs beyond ``max_dumps``, and
only files whose names have this pattern.

A temporary cut short (SIGKILL, power loss) never looks like a trace: the
.dat's magic bytes are written last, just before the rename, so trace-cmd
and tracewatch reject a partial file.  Temporaries (``.NAME.XXXXXXXX.tmp``)
are removed when a recorder opens the directory (:class:`DumpDir`, which
also holds the directory's lock while the recorder runs) and by
``tracewatch cleanup``.  Dumps, sidecars and status files are created
``0600`` (they hold kernel addresses), a directory the recorder creates
``0700``; ``file_mode`` changes both.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import queue
import re
import secrets
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import CaptureError, TracewatchError
from ..procfs import pid_alive
from ..formats.ring_page import COMMIT_MASK, RB_MISSED_EVENTS, RB_MISSED_STORED, walk_pages
from ..formats.tracedat import TRACEDAT_MAGIC
from ..formats.tracedat_writer import (PAGES_PER_CHUNK, TraceDatWriter, TraceMeta, directory_mode,
                                       make_private_directory)
from .page_ring import PageRing, RingHold, page_times, parse_size

__all__ = [
    "FlightRecorder",
    "DumpWriter",
    "PendingDump",
    "DumpRequest",
    "DumpResult",
    "cut_pages_after",
    "slugify",
    "dump_file_stem",
    "DEFAULT_MIN_FREE_BYTES",
    "DEFAULT_FILE_MODE",
    "DumpDir",
    "remove_stale_temporaries",
    "remove_open_temporaries",
    "replay_pages",
    "ReplaySource",
]

#: Dumps stop when the output file system would have less than this free.
DEFAULT_MIN_FREE_BYTES = 256 << 20

#: How long a post window may wait for a CPU that delivers nothing (trace time, ns).
DEFAULT_SETTLE_NS = 1_000_000_000

_NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z-[a-z0-9-]+(?:-\d+)?)\.(dat|json)$")

#: Permissions of dumps, sidecars and status files: they hold full kernel addresses.
DEFAULT_FILE_MODE = 0o600

#: The lock file a recorder holds in its dump directory (``flock``) while it runs.
LOCK_NAME = ".tracewatch.lock"

#: Temporaries of dumps, sidecars and the status file (``.<final name>.<8 hex digits>.tmp``): only
#: these are removed from a dump directory, which may hold other files.
_TEMP_RE = re.compile(r"^\.(?:\d{8}T\d{6}\.\d{3}Z-[a-z0-9-]+(?:-\d+)?\.(?:dat|json)|status\.json)"
                      r"\.[0-9a-f]{8}\.tmp$")

#: Temporaries this process is writing now (path -> None), for a last-resort exit that must not
#: leave them behind (see daemon.FlightRun's stop watchdog).
_open_temporaries: dict[str, None] = {}
_temporaries_lock = threading.Lock()


def _track_temporary(path: str, open_: bool) -> None:
    with _temporaries_lock:
        if open_:
            _open_temporaries[path] = None
        else:
            _open_temporaries.pop(path, None)


def remove_open_temporaries() -> list[str]:
    """Unlink the temporaries this process is writing (before ``os._exit``); returns their paths."""
    with _temporaries_lock:
        paths = list(_open_temporaries)
        _open_temporaries.clear()
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass
    return paths


def remove_stale_temporaries(directory: str) -> list[str]:
    """Remove the temporaries (``.NAME.XXXXXXXX.tmp``) left in ``directory``; returns their paths.

    Only call it while holding the directory's lock (:class:`DumpDir`): a
    recorder writing there holds it, and its temporaries are not stale.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not _TEMP_RE.match(name):
            continue
        path = os.path.join(directory, name)
        try:
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            continue
    return removed


#: Where a live recorder notes its dump directory while it runs (``flight-<pid>.out``), so that
#: ``tracewatch cleanup`` finds the directories of runs that were killed.
RUN_DIR = os.environ.get("TRACEWATCH_RUN_DIR", "/run/tracewatch")


def register_dump_dir(path: str) -> str | None:
    """Note ``path`` as this process's dump directory; returns the note's path (None: not writable)."""
    note = os.path.join(RUN_DIR, f"flight-{os.getpid()}.out")
    try:
        os.makedirs(RUN_DIR, 0o700, exist_ok=True)
        _write_atomic(note, (os.path.abspath(path) + "\n").encode())
    except OSError:
        return None  # not root, or no /run: `tracewatch cleanup --out DIR` still works
    return note


def unregister_dump_dir(note: str | None) -> None:
    if note:
        try:
            os.unlink(note)
        except OSError:
            pass


    return True


def cleanup_dead_dump_dirs() -> list[str]:
    """Remove the temporaries in the dump directories of recorders that died (SIGKILL); returns them.

    Reads the notes of :func:`register_dump_dir` whose pid is not running,
    sweeps each directory (when no live process holds its lock) and removes
    the note.
    """
    removed: list[str] = []
    try:
        names = os.listdir(RUN_DIR)
    except OSError:
        return removed
    for name in names:
        m = re.match(r"^flight-(\d+)\.out$", name)
        if not m or pid_alive(int(m.group(1))):
            continue
        note = os.path.join(RUN_DIR, name)
        try:
            with open(note, encoding="utf-8") as f:
                path = f.read().strip()
        except OSError:
            continue
        if path and os.path.isdir(path):
            try:
                d = DumpDir(path, create=False)
            except TracewatchError:
                d = None
            if d is not None:
                removed += d.swept or []
                d.close()
                if not d.swept and d.shared_with:
                    continue  # in use by a live recorder now: its temporaries are not stale
        unregister_dump_dir(note)
    return removed


class DumpDir:
    """A dump directory opened for a recorder: checked, created if missing, locked, swept of temporaries.

    Opening fails with a :class:`TracewatchError` (one line for the user)
    when ``path`` is not a directory or cannot be written: at start, before
    any tracing, not at the first dump.  A missing directory is created with
    :func:`directory_mode` of ``file_mode`` (0700); an existing one keeps its
    mode.  The lock (``flock`` on ``.tracewatch.lock``) is held until
    :meth:`close`: while another live process holds it, that process's
    temporaries are left alone (``swept`` is None) and ``shared_with`` says so.
    """

    def __init__(self, path: str | os.PathLike[str], file_mode: int = DEFAULT_FILE_MODE, *,
                 sweep: bool = True, create: bool = True) -> None:
        self.path = os.fspath(path)
        self.file_mode = file_mode
        self.swept: list[str] | None = None
        self.shared_with: str | None = None
        self._lock = None
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise TracewatchError(f"{self.path}: not a directory (dumps need a directory to go in)")
        if not os.path.isdir(self.path) and not create:
            raise TracewatchError(f"{self.path}: no such directory")
        if not os.path.isdir(self.path):
            try:
                make_private_directory(self.path, directory_mode(file_mode))
            except FileExistsError:
                if not os.path.isdir(self.path):
                    raise TracewatchError(f"{self.path}: not a directory (dumps need a directory to go in)") \
                        from None
            except OSError as e:
                raise TracewatchError(f"cannot create the dump directory {self.path}: {e.strerror}") from None
        lock_path = os.path.join(self.path, LOCK_NAME)
        try:
            # creating (or opening for writing) a file is the test that dumps can be written here: a
            # read-only mount fails now even for root, for whom access(2) says yes to a chmod 0500
            probe = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, file_mode)
        except OSError as e:
            raise TracewatchError(f"cannot write dumps to {self.path}: {e.strerror}") from None
        try:
            # the lock is held through a read-only descriptor: a file open for writing would keep an
            # administrator from remounting the file system read-only while the recorder runs
            self._lock = open(lock_path, "rb")  # noqa: SIM115 - held until close()
            try:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                self.shared_with = self._lock.read(64).decode(errors="replace").strip() or "another process"
                return
            os.ftruncate(probe, 0)
            os.write(probe, f"{os.getpid()}\n".encode())
        except OSError as e:
            self.close()
            raise TracewatchError(f"cannot write dumps to {self.path}: {e.strerror}") from None
        finally:
            os.close(probe)
        if sweep:
            self.swept = remove_stale_temporaries(self.path)

    @property
    def locked(self) -> bool:
        """Whether this process holds the directory's lock."""
        return self._lock is not None and not self._lock.closed and self.shared_with is None

    def close(self) -> None:
        """Let the lock go (the lock file stays: removing it would race another opener)."""
        if self._lock is not None and not self._lock.closed:
            self._lock.close()


def _duration_ns(value: str | int | float | None, default: int | None = 0) -> int | None:
    if value is None:
        return default
    from ..script.api import parse_duration

    ns = parse_duration(value)
    if ns < 0:
        raise ValueError(f"duration {value!r} is negative")
    return ns


def _version() -> str:
    from ..version import __version__

    return __version__


def _default_log(message: str) -> None:
    # one line per message on stderr, no time stamp: journald stores each as one entry with its own
    print(f"tracewatch[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def slugify(reason: str, limit: int = 48) -> str:
    """``"nginx: 5 failing stats!"`` -> ``"nginx-5-failing-stats"`` (``"dump"`` when nothing is left)."""
    slug = "-".join(re.findall(r"[a-z0-9]+", reason.lower()))[:limit].strip("-")
    return slug or "dump"


def dump_file_stem(wall_time: float, reason: str) -> str:
    """The file name without extension: UTC time with milliseconds, then the slug of the reason."""
    ms = int(round(wall_time * 1000))
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ms // 1000))
    return f"{stamp}.{ms % 1000:03d}Z-{slugify(reason)}"


def cut_pages_after(pages: np.ndarray, end_ts: int, page_size: int, *, commit_size: int = 8,
                    little: bool = True) -> tuple[np.ndarray, int]:
    """Pages of one CPU holding only events at or before ``end_ts``; returns (pages, events kept).

    Pages whose events are all later are dropped; the page where the cut
    falls gets a smaller ``commit`` (see the module docstring).  Returns a
    new array; ``pages`` is not changed.
    """
    arr = np.array(pages, dtype=np.uint8, copy=True).reshape(-1)
    n = len(arr) // page_size
    arr = arr[: n * page_size]
    if n == 0:
        return arr, 0
    idx = walk_pages(arr, page_size, commit_size=commit_size, little=little)
    first_ts, _last_ts, counts = page_times(idx)
    ts = idx.ts.astype(np.int64)
    data_start = 8 + commit_size
    order = "little" if little else "big"
    kept_pages: list[int] = []
    kept_events = 0
    for p in range(n):
        if counts[p] == 0:
            # an empty page (only padding or time stamps): keep it when it is not past the end
            if first_ts[p] <= end_ts:
                kept_pages.append(p)
            continue
        lo = int(idx.page_first[p])
        hi = lo + int(counts[p])
        k = int(np.searchsorted(ts[lo:hi], end_ts, side="right")) if _sorted(ts[lo:hi]) else \
            _count_prefix(ts[lo:hi], end_ts)
        if k == 0:
            continue
        kept_events += k
        kept_pages.append(p)
        if k < hi - lo:
            _rewrite_commit(arr, p, page_size, data_start, commit_size, order,
                            int(idx.offset[lo + k - 1] + idx.length[lo + k - 1]))
    if len(kept_pages) == n:
        return arr, kept_events
    rows = arr.reshape(n, page_size)[kept_pages]
    return rows.reshape(-1), kept_events


def _sorted(ts: np.ndarray) -> bool:
    return len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1]))


def _count_prefix(ts: np.ndarray, end_ts: int) -> int:
    """Events before the first one after ``end_ts`` (time going backwards inside a page)."""
    after = np.flatnonzero(ts > end_ts)
    return int(after[0]) if len(after) else len(ts)


def _rewrite_commit(arr: np.ndarray, page: int, page_size: int, data_start: int, commit_size: int,
                    order: str, data_end: int) -> None:
    """Make page ``page`` of ``arr`` end its data at byte ``data_end`` of the buffer."""
    base = page * page_size
    at = base + 8
    old = int.from_bytes(arr[at : at + commit_size].tobytes(), order)
    flags = old & (RB_MISSED_EVENTS | RB_MISSED_STORED)
    old_size = old & COMMIT_MASK
    new_size = data_end - base - data_start
    if flags & RB_MISSED_STORED:
        # the lost-events count (a long) sits right after the data: move it to the new end
        src = base + data_start + old_size
        dst = base + data_start + new_size
        if src + commit_size <= base + page_size:
            arr[dst : dst + commit_size] = arr[src : src + commit_size].copy()
    arr[at : at + commit_size] = np.frombuffer((new_size | flags).to_bytes(commit_size, order), np.uint8)


#: Pages written from the ring per hold of the recorder's lock (32 MiB of 4 KiB pages): the
#: reader waits at most that long (a few ms) for the lock while a dump is written from the ring.
RING_PAGES_PER_LOCK = 8192

#: The interpreter's switch interval while a dump is written (s).
DUMP_SWITCH_INTERVAL = 0.0005

#: iovecs per writev call (Linux IOV_MAX is 1024).
_IOV_MAX = 1024


def _writev_all(fd: int, views: list[memoryview]) -> None:
    """Write every view, in order, with as few ``writev`` calls as IOV_MAX allows (GIL released inside)."""
    i = 0
    while i < len(views):
        batch = views[i : i + _IOV_MAX]
        want = sum(v.nbytes for v in batch)
        done = os.writev(fd, batch)
        if done < want:  # a short write (rare on regular files): finish this batch one view at a time
            for v in batch:
                if done >= v.nbytes:
                    done -= v.nbytes
                    continue
                rest = v[done:]
                done = 0
                while rest.nbytes:
                    rest = rest[os.write(fd, rest):]
        i += _IOV_MAX


_libc_writev: Any = None


def _writev_iov(fd: int, iov: np.ndarray) -> None:
    """``writev`` of a ``struct iovec`` array through ctypes: the GIL is released for each call,
    and no Python object is made per page (a dump of 64 MiB is a handful of calls)."""
    global _libc_writev
    if _libc_writev is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        f = libc.writev
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        f.restype = ctypes.c_ssize_t
        _libc_writev = f
    iov = np.ascontiguousarray(iov, np.uint64)
    i = 0
    while i < len(iov):
        batch = iov[i : i + _IOV_MAX]
        done = _libc_writev(fd, batch.ctypes.data, len(batch))
        if done < 0:
            import ctypes

            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        want = int(batch[:, 1].sum())
        if done < want:  # short write: continue from the middle of the entry where it stopped
            ends = np.cumsum(batch[:, 1].astype(np.int64))
            j = int(np.searchsorted(ends, done, side="right"))
            rest = iov[i + j :].copy()
            into = done - (int(ends[j - 1]) if j else 0)
            rest[0, 0] += np.uint64(into)
            rest[0, 1] -= np.uint64(into)
            iov, i = rest, 0
            continue
        i += _IOV_MAX


class _RingPart:
    """Pages of one CPU still in the ring (a :class:`RingHold`), written straight from its slab."""

    def __init__(self, hold: RingHold, cpu: int, lo: int, hi: int, lock: Any) -> None:
        self.hold, self.cpu, self.lo, self.hi, self.lock = hold, cpu, lo, hi, lock
        self.nbytes = (hi - lo) * hold.ring.page_size

    def write_fd(self, fd: int) -> None:
        for at in range(self.lo, self.hi, RING_PAGES_PER_LOCK):
            with self.lock:  # the slab is reused only under this lock: hold it while the kernel copies
                _writev_iov(fd, self.hold.iovecs(self.cpu, at, min(at + RING_PAGES_PER_LOCK, self.hi)))

    def copy(self) -> np.ndarray:
        with self.lock:
            views = self.hold.views(self.cpu, self.lo, self.hi)
            return np.concatenate([np.frombuffer(v, np.uint8) for v in views]) if views else \
                np.empty(0, np.uint8)


class _DumpFileWriter(TraceDatWriter):
    """A :class:`TraceDatWriter` for dumps: pages kept by reference, the file visible before it is durable.

    The pages of a dump are not copied: pages still in the ring are written
    straight from its slab (:class:`_RingPart`, under the recorder's lock
    for each 16 MiB), the post window's pages from the reader's own
    batches; one pass writes them to the temporary file with ``writev``
    (the GIL is released while the kernel copies).  The file is renamed as
    soon as it is complete (every reader sees a whole file;
    :attr:`renamed_at` is the trigger-to-file end point), then fsynced with
    its directory; the dump's sidecar is written only after that, so a
    .json always describes a .dat that survives a crash.  :attr:`marks`
    has the monotonic times of each step, for the sidecar's ``timing_ms``.
    """

    def __init__(self, *a: Any, file_mode: int = DEFAULT_FILE_MODE, **kw: Any) -> None:
        super().__init__(*a, mode=file_mode, **kw)
        self._held_pages: dict[int, list[Any]] = {}
        self.renamed_at: float | None = None
        self.marks: dict[str, float] = {}
        self.file_mode = file_mode
        self._magic_at: int | None = None

    def _create_temp(self, suffix: str = ".tmp", flags: int = os.O_WRONLY) -> tuple[str, int]:
        """TraceDatWriter's (exactly ``file_mode``), tracked until renamed or removed (a last-resort exit
        removes it)."""
        tmp, fd = super()._create_temp(suffix, flags)
        _track_temporary(tmp, True)
        return tmp, fd

    def _initial_format(self, out) -> None:  # noqa: ANN001
        # zeros where the magic goes: a file cut short is no trace for any reader; close() writes
        # the magic once everything else is in the file
        self._magic_at = out.tell()
        super()._initial_format(out)
        end = out.tell()
        out.f.seek(self._magic_at)
        out.raw(b"\0" * len(TRACEDAT_MAGIC))
        out.f.seek(end)

    def add_ring_part(self, part: _RingPart) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if not 0 <= part.cpu < self.cpus:
            raise ValueError(f"CPU {part.cpu} out of range (the writer has {self.cpus} CPUs)")
        if part.nbytes:
            self._held_pages.setdefault(part.cpu, []).append(part)
            self._sizes[part.cpu] += part.nbytes

    def add_pages(self, cpu: int, pages: Any) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if not 0 <= cpu < self.cpus:
            raise ValueError(f"CPU {cpu} out of range (the writer has {self.cpus} CPUs)")
        arr = np.ascontiguousarray(pages).reshape(-1).view(np.uint8)
        if len(arr) % self.meta.page_size:
            raise ValueError(f"{len(arr)} bytes are not a whole number of {self.meta.page_size}-byte pages")
        if len(arr):
            self._held_pages.setdefault(cpu, []).append(arr)
            self._sizes[cpu] += len(arr)

    def _copy_cpu(self, out, cpu: int) -> None:  # noqa: ANN001
        items = self._held_pages.get(cpu, ())
        if not items:
            return
        if "metadata" not in self.marks:
            self.marks["metadata"] = time.monotonic()
        f = out.f
        f.flush()
        fd = f.fileno()
        run: list[memoryview] = []
        for item in items:
            if isinstance(item, _RingPart):
                _writev_all(fd, run)
                run = []
                item.write_fd(fd)
            else:
                run.append(memoryview(item).cast("B"))
        _writev_all(fd, run)
        f.seek(os.lseek(fd, 0, os.SEEK_CUR))  # the buffered file's idea of the position: where the fd is

    def _cpu_chunks(self, cpu: int):
        chunk = PAGES_PER_CHUNK * self.meta.page_size
        for item in self._held_pages.get(cpu, ()):
            arr = item.copy() if isinstance(item, _RingPart) else item
            for at in range(0, len(arr), chunk):
                yield arr[at : at + chunk].tobytes()

    def _drop_spools(self) -> None:
        self._held_pages.clear()
        super()._drop_spools()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.marks["start"] = time.monotonic()
        tmp_path, fd = self._create_temp()
        # the handlers' thread holds the GIL most of the time: each time this thread comes back from a
        # write (the GIL released) it waits for a switch; a short interval while the file is written
        # measured 2-3x faster writes under load (restored after)
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, DUMP_SWITCH_INTERVAL))
        try:
            f = os.fdopen(fd, "wb")
            try:
                self._write_whole(f)
                f.flush()
                if self._magic_at is not None:
                    os.pwrite(f.fileno(), TRACEDAT_MAGIC, self._magic_at)  # complete: a trace now
                self.marks["pages"] = time.monotonic()
                self.marks.setdefault("metadata", self.marks["pages"])
                os.replace(tmp_path, self.path)  # complete: visible now
                _track_temporary(tmp_path, False)
                self.renamed_at = self.marks["renamed"] = time.monotonic()
                os.fsync(f.fileno())  # durable: before the sidecar says it is there
                self.marks["fsynced"] = time.monotonic()
            finally:
                f.close()
        except BaseException:
            if self.renamed_at is None:
                try:
                    os.unlink(tmp_path)
                except OSError:
                    pass
                _track_temporary(tmp_path, False)
            raise
        finally:
            sys.setswitchinterval(switch)
            self._drop_spools()
        self._fsync_directory()


@dataclass
class DumpRequest:
    """A trigger: why, when (trace time, ns) and what the dump should cover."""

    reason: str
    trigger_ts: int
    before_ns: int | None = None  # None: everything the ring holds
    after_ns: int = 0
    event: str | None = None  # the trigger event's report line, when there is one
    wall_time: float = field(default_factory=time.time)
    script: str | None = None
    #: how far the pages read were ahead of the trigger (newest page ts - trigger ts) when it fired
    lag_ns: int | None = None
    #: time.monotonic() of the trigger call (or of the SIGUSR1), for the trigger-to-file delay
    requested_at: float = field(default_factory=time.monotonic)
    #: triggers counted in cooldown since the previous dump was admitted (for the sidecar)
    suppressed_before: int = 0

    @property
    def end_ts(self) -> int:
        """The last trace time that goes in the dump."""
        return self.trigger_ts + self.after_ns


@dataclass
class DumpResult:
    """A dump on disk, as its sidecar describes it."""

    path: str
    sidecar: str
    reason: str
    trigger_ts: int
    events: int
    events_per_cpu: dict[int, int]
    bytes: int  # size of the .dat file
    pages: int
    events_lost: int
    pages_with_unknown_loss: int
    first_ts: int | None
    last_ts: int | None
    write_seconds: float
    #: from the trigger call (or SIGUSR1's arrival) to the rename of the .dat (includes the post window,
    #: not the fsync after the rename)
    trigger_to_file_seconds: float = 0.0
    #: the steps of trigger-to-file and after it, in ms (see the sidecar's ``timing_ms``)
    timing_ms: dict[str, float] = field(default_factory=dict)


class PendingDump:
    """One dump being collected: pre-trigger pages already spooled, post-window pages still coming.

    Made by :meth:`DumpWriter.begin`; fed by :meth:`FlightRecorder.add_pages`.
    Pages entirely inside the window go to the :class:`TraceDatWriter` spool
    at once; only a CPU's page that reaches past the end is held (copied),
    to be cut at :meth:`finish`.  A CPU whose page starts after the end is
    done: later pages of it cannot be in the window.
    """

    def __init__(self, owner: "DumpWriter", request: DumpRequest, path: str,
                 writer: TraceDatWriter | Callable[[], TraceDatWriter], *, page_size: int, commit_size: int,
                 little: bool, cpus: int | None = None) -> None:
        self.owner = owner
        self.request = request
        self.path = path
        self.end_ts = request.end_ts
        # a callable makes the writer (and reads the metadata) on first use: in the
        # recorder's writer thread when it has one, not in the handler that triggered
        self._writer_or_factory = writer
        self.cpus = writer.cpus if isinstance(writer, TraceDatWriter) else int(cpus or 1)
        self._page_size = page_size
        self._commit_size = commit_size
        self._little = little
        self._held: dict[int, list[np.ndarray]] = {}
        self._items: dict[int, list[Any]] = {}  # per CPU, in file order: page arrays and _RingParts
        self._holds: list[RingHold] = []
        self._lock: Any = None  # the recorder's lock, under which ring pages are read and holds released
        self.held_at: float | None = None  # when the ring's pages were held (the trigger's own work done)
        self.finish_at: float | None = None  # when the writer started on the file
        self._done_cpus: set[int] = set()
        self.events_per_cpu: dict[int, int] = {}
        self.pages = 0
        self.events_lost = 0
        self.pages_with_unknown_loss = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.finished = False
        self.result: DumpResult | None = None

    @property
    def _writer(self) -> TraceDatWriter:
        w = self._writer_or_factory
        if not isinstance(w, TraceDatWriter):
            w = self._writer_or_factory = w()
        return w

    def feed(self, cpu: int, pages: np.ndarray, index=None) -> None:
        """Take a batch of whole pages of ``cpu`` read after the trigger (or the ring's snapshot)."""
        if self.finished or cpu in self._done_cpus or cpu >= self.cpus:
            return
        arr = pages.reshape(-1).view(np.uint8) if isinstance(pages, np.ndarray) else \
            np.frombuffer(pages, dtype=np.uint8)
        n = len(arr) // self._page_size
        if n == 0:
            return
        arr = arr[: n * self._page_size]
        if index is None:
            index = walk_pages(arr, self._page_size, commit_size=self._commit_size, little=self._little)
        first_ts, last_ts, counts = page_times(index)
        if cpu in self._held:
            k = 0  # order on the CPU: once a page is held, every later page is held too
        else:
            past = np.flatnonzero(last_ts > self.end_ts)
            k = int(past[0]) if len(past) else n
        if k:
            # a copy: the reader's batches are views of its 64 MiB arenas, which a view kept here
            # would keep from being reused until the dump is written
            self._spool(cpu, arr[: k * self._page_size].copy(), first_ts[:k], last_ts[:k], counts[:k],
                        index.page_missed[:k])
        if k < n:
            rest = np.flatnonzero(first_ts[k:] > self.end_ts)
            stop = k + int(rest[0]) if len(rest) else n
            if stop > k:
                self._held.setdefault(cpu, []).append(arr[k * self._page_size : stop * self._page_size].copy())
            if stop < n:
                self._done_cpus.add(cpu)

    def feed_hold(self, cpu: int, hold: RingHold, lock: Any) -> None:
        """Take ``cpu``'s pages held in the ring at the trigger (no copy; call under ``lock``)."""
        if hold not in self._holds:
            self._holds.append(hold)
        self._lock = lock
        if self.finished or cpu in self._done_cpus or cpu >= self.cpus or not hold.pages(cpu):
            return
        first_ts, last_ts, counts, missed = hold.times(cpu)
        n = len(counts)
        if cpu in self._held:
            k = 0
        else:
            past = np.flatnonzero(last_ts > self.end_ts)
            k = int(past[0]) if len(past) else n
        if k:
            self._spool(cpu, _RingPart(hold, cpu, 0, k, lock), first_ts[:k], last_ts[:k], counts[:k], missed[:k])
        if k < n:
            rest = np.flatnonzero(first_ts[k:] > self.end_ts)
            stop = k + int(rest[0]) if len(rest) else n
            if stop > k:
                # pages reaching past the end are cut at finish(): a copy of those few
                self._held.setdefault(cpu, []).append(_RingPart(hold, cpu, k, stop, lock).copy())
            if stop < n:
                self._done_cpus.add(cpu)

    def _spool(self, cpu: int, arr: Any, first_ts: np.ndarray, last_ts: np.ndarray, counts: np.ndarray,
               missed: np.ndarray) -> None:
        self._items.setdefault(cpu, []).append(arr)
        self.pages += len(counts)
        self.events_per_cpu[cpu] = self.events_per_cpu.get(cpu, 0) + int(counts.sum())
        self.events_lost += int(missed[missed > 0].sum())
        self.pages_with_unknown_loss += int(np.count_nonzero(missed < 0))
        has = counts > 0
        if has.any():
            lo, hi = int(first_ts[has].min()), int(last_ts[has].max())
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)

    def is_due(self, newest_per_cpu: dict[int, int], settle_ns: int = DEFAULT_SETTLE_NS) -> bool:
        """Whether trace time has passed the end of the window.

        True when every CPU that has delivered pages has an event after the
        end, or when any CPU is ``settle_ns`` past it (an idle CPU must not
        hold a dump back for ever; a busy one is read at least every flush
        interval of the live reader, which ``settle_ns`` must exceed).
        """
        if not newest_per_cpu:
            return False
        times = list(newest_per_cpu.values())
        return min(times) > self.end_ts or max(times) > self.end_ts + settle_ns

    def finish(self) -> DumpResult:
        """Cut the held pages at the end of the window, write the file, its sidecar, and rotate."""
        if self.result is not None:
            return self.result
        self.finished = True
        self.finish_at = time.monotonic()
        for cpu in sorted(self._held):
            held = np.concatenate(self._held[cpu])
            cut, _ = cut_pages_after(held, self.end_ts, self._page_size, commit_size=self._commit_size,
                                     little=self._little)
            if len(cut):
                idx = walk_pages(cut, self._page_size, commit_size=self._commit_size, little=self._little)
                f, l_, c = page_times(idx)
                self._spool(cpu, cut, f, l_, c, idx.page_missed)
        self._held.clear()
        started = time.monotonic()
        try:
            try:
                w = self._writer
                for cpu in sorted(self._items):
                    for item in self._items[cpu]:
                        if isinstance(item, _RingPart):
                            w.add_ring_part(item)
                        else:
                            w.add_pages(cpu, item)
                self._items.clear()
                w.close()
            finally:
                self._release_holds()
        except BaseException:
            self.owner._failed(self)
            raise
        renamed = getattr(self._writer, "renamed_at", None) or time.monotonic()
        timing = self._timing(started)
        try:
            self.result = self.owner._completed(self, time.monotonic() - started,
                                                renamed - self.request.requested_at, timing)
        except BaseException:
            # the .dat is complete, its sidecar is not: counted as failed (the .dat stays, readable)
            self.owner._failed(self)
            raise
        return self.result

    def _timing(self, started: float) -> dict[str, float]:
        """Steps in ms: trigger -> pages held -> writer starts -> metadata -> pages -> rename -> fsync."""
        req = self.request.requested_at
        marks = getattr(self._writer, "marks", {})
        points = [("hold", self.held_at), ("queue", self.finish_at), ("setup", marks.get("start")),
                  ("metadata", marks.get("metadata")), ("pages", marks.get("pages")),
                  ("rename", marks.get("renamed")), ("fsync", marks.get("fsynced"))]
        out: dict[str, float] = {}
        prev = req
        for name, t in points:
            if t is None:
                continue
            out[name] = round((t - prev) * 1000, 1)
            prev = t
        del started
        return out

    def _release_holds(self) -> None:
        if not self._holds:
            return
        if self._lock is not None:
            with self._lock:
                for h in self._holds:
                    h.release()
        else:
            for h in self._holds:
                h.release()
        self._holds.clear()

    def abort(self) -> None:
        """Drop the dump: nothing is written."""
        self.finished = True
        self._held.clear()
        self._items.clear()
        self._release_holds()
        if isinstance(self._writer_or_factory, TraceDatWriter):
            self._writer_or_factory.abort()

    @property
    def events(self) -> int:
        return sum(self.events_per_cpu.values())


class DumpWriter:
    """Where and whether dumps are written: names, sidecars, rotation, cooldown, free space.

    ``meta`` is a :class:`TraceMeta` or a function returning one, called for
    each dump (a live run reads tracefs then, so saved_cmdlines are current).
    ``cooldown`` (trace time, ``"60s"``): triggers less than that after the
    last admitted one are counted, not dumped.  ``min_free_bytes``: a dump is
    skipped when the file system of ``out_dir`` would be left with less free
    space (statvfs ``f_bavail``); dumping resumes when space is back, and both
    changes are logged once.  ``dump_limit`` / ``dump_limit_bytes``: the
    run's budget; once that many dumps were admitted (or that many bytes
    written), further triggers are counted as ``suppressed_limit`` (logged
    once; a forced dump, SIGUSR1, still goes through).  ``settings`` go into every sidecar (keep,
    before, after, ...).  ``log`` takes one line per message.  ``out_dir``:
    a path or an open :class:`DumpDir`; ``file_mode``: of every file written
    (0600), and of the directory when it has to be created (0700).
    """

    def __init__(self, out_dir: str | os.PathLike[str] | DumpDir, meta: TraceMeta | Callable[[], TraceMeta], *,
                 max_dumps: int | None = None, min_free_bytes: int | str = DEFAULT_MIN_FREE_BYTES,
                 cooldown: str | int | float | None = None, version: int = 6, compression: str | None = None,
                 settings: dict[str, Any] | None = None, log: Callable[[str], None] | None = None,
                 dump_limit: int | None = None, dump_limit_bytes: int | str | None = None,
                 file_mode: int = DEFAULT_FILE_MODE) -> None:
        self.dir = out_dir if isinstance(out_dir, DumpDir) else DumpDir(out_dir, file_mode)
        self.out_dir = self.dir.path
        self.file_mode = self.dir.file_mode
        self._meta = meta
        if max_dumps is not None and max_dumps < 1:
            raise ValueError("max_dumps must be at least 1")
        self.max_dumps = max_dumps
        if dump_limit is not None and dump_limit < 1:
            raise ValueError("dump_limit must be at least 1")
        self.dump_limit = dump_limit
        self.dump_limit_bytes = None if dump_limit_bytes is None else parse_size(dump_limit_bytes)
        self.min_free_bytes = parse_size(min_free_bytes)
        self.cooldown_ns = _duration_ns(cooldown) or 0
        self.version = version
        self.compression = compression
        self.settings = dict(settings or {})
        self.log = log or _default_log
        self.triggers = 0
        self.dumps_written = 0
        self.suppressed_cooldown = 0  # triggers inside a cooldown, in all
        self.skipped_disk_full = 0
        self.failed = 0
        self.failure: str | None = None  # why the last dump failed (strerror), for the summary
        self.rotated = 0
        self.suppressed_limit = 0  # triggers beyond dump_limit / dump_limit_bytes
        self.admitted = 0  # dumps admitted (written, being written or failed)
        self.bytes_written = 0  # of the .dat files written by this writer
        self._limit_logged = False
        self._suppressed_since_dump = 0
        self.admitted_suppressed = 0  # cooldown-suppressed triggers just before the last admitted one
        self._last_admitted_ts: int | None = None
        self._disk_full = False
        self.last_result: DumpResult | None = None
        self._reserved: set[str] = set()  # stems of lazy dumps not yet on disk

    # -- policy ------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still use on the output file system."""
        st = os.statvfs(self.out_dir)
        return st.f_bavail * st.f_frsize

    def admit(self, trigger_ts: int, estimated_bytes: int = 0, *, force: bool = False) -> str | None:
        """Count a trigger; None if it may be dumped, else why not (``"cooldown"``, ``"disk full"``).

        ``force`` (an operator's SIGUSR1): no cooldown, but the free-space check still holds.
        """
        self.triggers += 1
        if (not force and self.cooldown_ns and self._last_admitted_ts is not None
                and 0 <= trigger_ts - self._last_admitted_ts < self.cooldown_ns):
            self.suppressed_cooldown += 1
            self._suppressed_since_dump += 1
            return "cooldown"
        over = None if force else self._over_limit()
        if over is not None:
            self.suppressed_limit += 1
            if not self._limit_logged:
                self._limit_logged = True
                self.log(f"dump limit reached ({over}): further triggers are counted, not dumped "
                         "(SIGUSR1 still dumps)")
            return "limit"
        free = self.free_bytes()
        if free - estimated_bytes < self.min_free_bytes:
            self.skipped_disk_full += 1
            if not self._disk_full:
                self._disk_full = True
                self.log(f"dumping stopped: {free >> 20} MiB free in {self.out_dir}, a dump needs about "
                         f"{estimated_bytes >> 20} MiB and {self.min_free_bytes >> 20} MiB must stay free; "
                         "triggers are counted until space is freed")
            return "disk full"
        if self._disk_full:
            self._disk_full = False
            self.log(f"dumping resumed: {free >> 20} MiB free in {self.out_dir} "
                     f"({self.skipped_disk_full} triggers were not dumped)")
        self._last_admitted_ts = trigger_ts
        self.admitted += 1
        # taken now, not when the dump is written: with a writer thread, later triggers may be
        # counted before this dump completes, and they belong to the next dump's sidecar
        self.admitted_suppressed = self._suppressed_since_dump
        self._suppressed_since_dump = 0
        return None

    def _over_limit(self) -> str | None:
        """The budget this run has used up (a phrase for the log), or None."""
        if self.dump_limit is not None and self.admitted >= self.dump_limit:
            return f"{self.admitted} dumps, --dump-limit {self.dump_limit}"
        if self.dump_limit_bytes is not None and self.bytes_written >= self.dump_limit_bytes:
            return (f"{self.bytes_written >> 20} MiB written, --dump-limit-bytes "
                    f"{self.dump_limit_bytes >> 20} MiB")
        return None

    # -- writing -----------------------------------------------------------------

    def _unique_stem(self, request: DumpRequest) -> str:
        stem = dump_file_stem(request.wall_time, request.reason)
        candidate, n = stem, 1
        while (candidate in self._reserved or os.path.exists(os.path.join(self.out_dir, candidate + ".dat"))
               or os.path.exists(os.path.join(self.out_dir, candidate + ".json"))):
            n += 1
            candidate = f"{stem}-{n}"
        return candidate

    def begin(self, request: DumpRequest, cpus: int, *, page_size: int, commit_size: int = 8,
              little: bool = True, lazy: bool = False) -> PendingDump:
        """Start a dump (after :meth:`admit`): its file gets pages from :meth:`PendingDump.feed`.

        ``lazy``: the metadata is read and the writer made when the first page
        is spooled (in the recorder's writer thread), not now.
        """
        stem = self._unique_stem(request)
        path = os.path.join(self.out_dir, stem + ".dat")
        if lazy:
            # reserve the name now (two dumps in the same millisecond), make the writer when first used
            self._reserved.add(stem)

            def make() -> TraceDatWriter:
                meta = self._meta() if callable(self._meta) else self._meta
                if meta.page_size != page_size:
                    meta = TraceMeta(**{**asdict(meta), "page_size": page_size})
                return _DumpFileWriter(path, meta, max(cpus, 1), version=self.version,
                                       compression=self.compression, file_mode=self.file_mode)

            return PendingDump(self, request, path, make, page_size=page_size, commit_size=commit_size,
                               little=little, cpus=max(cpus, 1))
        meta = self._meta() if callable(self._meta) else self._meta
        if meta.page_size != page_size:
            meta = TraceMeta(**{**asdict(meta), "page_size": page_size})
        writer = _DumpFileWriter(path, meta, max(cpus, 1), version=self.version, compression=self.compression,
                                 file_mode=self.file_mode)
        return PendingDump(self, request, path, writer, page_size=page_size, commit_size=commit_size,
                           little=little)

    def _failed(self, pending: PendingDump) -> None:
        self.failed += 1
        error = sys.exc_info()[1]
        self.failure = (error.strerror if isinstance(error, OSError) and error.strerror else
                        type(error).__name__ if error is not None and not str(error) else str(error))
        self._reserved.discard(os.path.basename(pending.path)[: -len(".dat")])
        self.log(f"dump failed: {pending.path}: {error}")

    def _completed(self, pending: PendingDump, write_seconds: float, trigger_to_file: float = 0.0,
                   timing: dict[str, float] | None = None) -> DumpResult:
        req = pending.request
        sidecar = pending.path[: -len(".dat")] + ".json"
        result = DumpResult(
            path=pending.path, sidecar=sidecar, reason=req.reason, trigger_ts=req.trigger_ts,
            events=pending.events, events_per_cpu=dict(sorted(pending.events_per_cpu.items())),
            bytes=os.path.getsize(pending.path), pages=pending.pages, events_lost=pending.events_lost,
            pages_with_unknown_loss=pending.pages_with_unknown_loss, first_ts=pending.first_ts,
            last_ts=pending.last_ts, write_seconds=write_seconds, trigger_to_file_seconds=trigger_to_file,
            timing_ms=dict(timing or {}))
        doc = {
            "file": os.path.basename(pending.path),
            "reason": req.reason,
            "trigger": {
                "ts_ns": req.trigger_ts,
                "time": _iso(req.wall_time),
                "event": req.event,
                "lag_ns": req.lag_ns,
            },
            "script": req.script,
            "events": result.events,
            "events_per_cpu": {str(c): n for c, n in result.events_per_cpu.items()},
            "bytes": result.bytes,
            "pages": result.pages,
            "events_lost": result.events_lost,
            "pages_with_unknown_loss": result.pages_with_unknown_loss,
            "first_ts_ns": result.first_ts,
            "last_ts_ns": result.last_ts,
            "window": {"before_ns": req.before_ns, "after_ns": req.after_ns, "end_ts_ns": req.end_ts},
            "write_ms": round(write_seconds * 1000, 1),
            "trigger_to_file_ms": round(trigger_to_file * 1000, 1),
            "timing_ms": result.timing_ms,
            "triggers_suppressed_before": req.suppressed_before,
            "settings": {**self.settings, "cooldown_ns": self.cooldown_ns, "max_dumps": self.max_dumps,
                         "dump_limit": self.dump_limit, "dump_limit_bytes": self.dump_limit_bytes},
            "tracewatch_version": _version(),
            "written": _iso(time.time()),
        }
        self.bytes_written += result.bytes  # before the sidecar: a failed sidecar still used the space
        _write_atomic(sidecar, (json.dumps(doc, indent=2) + "\n").encode(), self.file_mode)
        self._reserved.discard(os.path.basename(pending.path)[: -len(".dat")])
        self.dumps_written += 1
        self.last_result = result
        self.log(f"dump written: {pending.path} ({result.events} events, {result.bytes} bytes, {req.reason})")
        self._rotate()
        return result

    def dumps(self) -> list[str]:
        """Stems of the dumps in ``out_dir`` (files named as this writer names them), oldest first."""
        stems = set()
        for name in os.listdir(self.out_dir):
            m = _NAME_RE.match(name)
            if m:
                stems.add(m.group(1))
        return sorted(stems)

    def _rotate(self) -> None:
        if self.max_dumps is None:
            return
        stems = self.dumps()
        for stem in stems[: max(0, len(stems) - self.max_dumps)]:
            for ext in (".json", ".dat"):  # the sidecar first: a .json never outlives its .dat
                try:
                    os.unlink(os.path.join(self.out_dir, stem + ext))
                except FileNotFoundError:
                    pass
            self.rotated += 1

    def counters(self) -> dict[str, int]:
        """For a status line: triggers, dumps written, suppressed by cooldown or the limit, skipped for
        space, failed (and why the last one failed)."""
        return {"triggers": self.triggers, "dumps": self.dumps_written,
                "suppressed_cooldown": self.suppressed_cooldown, "suppressed_limit": self.suppressed_limit,
                "skipped_disk_full": self.skipped_disk_full, "failed": self.failed, "failure": self.failure,
                "rotated": self.rotated, "bytes_written": self.bytes_written}

    def summary(self) -> str:
        """The counters as the last line of a run says them: ``3 dumps written, 2 failed (No space ...)``."""
        parts = [f"{self.dumps_written} dump(s) written"]
        if self.failed:
            parts.append(f"{self.failed} failed" + (f" ({self.failure})" if self.failure else ""))
        parts.append(f"{self.triggers} trigger(s)")
        parts.append(f"{self.suppressed_cooldown} in cooldown")
        if self.suppressed_limit:
            parts.append(f"{self.suppressed_limit} over the dump limit")
        parts.append(f"{self.skipped_disk_full} skipped for space")
        return ", ".join(parts)

    def check_written(self) -> None:
        """Raise :class:`CaptureError` when dumps failed: a recorder whose dumps did not reach the
        disk has not done its job, and the exit status says so (flight and ``run --keep`` alike)."""
        if self.failed:
            raise CaptureError(f"{self.failed} of {self.failed + self.dumps_written} dump(s) failed"
                               + (f" ({self.failure})" if self.failure else "") + f" in {self.out_dir}")

    def close(self) -> None:
        """Let the dump directory's lock go."""
        self.dir.close()


def _iso(wall: float) -> str:
    ms = int(round(wall * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _write_atomic(path: str, data: bytes, mode: int = DEFAULT_FILE_MODE) -> None:
    """Write ``path`` whole or not at all: a temporary of ``mode`` beside it, fsync, rename."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        _track_temporary(tmp, True)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        _track_temporary(tmp, False)


class FlightRecorder:
    """The flight recorder: a :class:`PageRing` teed from the page reader, and dumps on triggers.

    The page reader calls :meth:`add_pages` with every batch it reads, before
    decoding; triggers (:meth:`trigger`, or ``tracewatch.dump()`` in a script)
    start a dump of what the ring holds, which completes once trace time
    passes ``trigger + after``.  :meth:`close` completes whatever is pending.

    ``keep``: bytes of pages to hold (``"64M"``); ``before``: default span
    before a trigger (None: everything held); ``after``: default post window;
    ``cpus``: the traced machine's CPU count (default: highest CPU seen + 1);
    ``max_pending``: dumps collecting at once (more triggers are counted as
    busy); ``background``: write dumps in a writer thread, so a trigger
    costs the handler only choosing the pages to hold (no copy; the
    metadata, the file writes and the fsync happen beside it); ``late``: a trigger whose
    event is older than the newest page read by more than this is counted as
    late (the handlers are behind the reader); ``headroom``: the ring holds
    ``keep * (1 + headroom)`` so that ``keep`` bytes before a late trigger
    are still there; the rest go to :class:`DumpWriter`.

    Every method may be called from any thread (SIGUSR1 dumps and the status
    file are served outside the dispatch loop): one lock guards the ring.
    """

    def __init__(self, keep: int | str, out_dir: str | os.PathLike[str],
                 meta: TraceMeta | Callable[[], TraceMeta], *, page_size: int = 4096, commit_size: int = 8,
                 little: bool = True, cpus: int | None = None, before: str | int | float | None = None,
                 after: str | int | float | None = 0, max_dumps: int | None = None,
                 cooldown: str | int | float | None = None, min_free_bytes: int | str = DEFAULT_MIN_FREE_BYTES,
                 settle: str | int | float | None = None, script: str | None = None, version: int = 6,
                 compression: str | None = None, max_pending: int = 4, background: bool = False,
                 late: str | int | float = "1s", headroom: float = 0.0,
                 log: Callable[[str], None] | None = None, dump_limit: int | None = None,
                 dump_limit_bytes: int | str | None = None, file_mode: int = DEFAULT_FILE_MODE) -> None:
        # headroom: extra ring beyond keep for the pages read while the handlers catch up to a
        # trigger, so a dump still holds `keep` bytes before a trigger that was seen late
        self.ring = PageRing(int(parse_size(keep) * (1 + headroom)), page_size, commit_size=commit_size,
                             little=little)
        self.keep_bytes = parse_size(keep)
        self.page_size = page_size
        self.commit_size = commit_size
        self.little = little
        self.cpus = cpus
        self.before_ns = _duration_ns(before, None)
        self.after_ns = _duration_ns(after) or 0
        self.settle_ns = _duration_ns(settle, DEFAULT_SETTLE_NS)
        self.script = script
        self.max_pending = max_pending
        self.writer = DumpWriter(
            out_dir, meta, max_dumps=max_dumps, min_free_bytes=min_free_bytes, cooldown=cooldown,
            version=version, compression=compression, log=log, dump_limit=dump_limit,
            dump_limit_bytes=dump_limit_bytes, file_mode=file_mode,
            settings={"keep_bytes": parse_size(keep), "ring_bytes": self.ring.keep_bytes, "before_ns": self.before_ns, "after_ns": self.after_ns,
                      "page_size": page_size})
        self.pending: list[PendingDump] = []
        self.results: list[DumpResult] = []
        self.busy = 0  # triggers refused because max_pending dumps were collecting
        self.now_ts: int | None = None  # trace time the dispatcher has reached (note_time)
        self._max_cpu = -1
        self._newest: dict[int, int] = {}  # CPU -> newest event time it delivered
        self.lock = threading.RLock()
        self.events_added = 0  # events in every page added (what the kernel delivered)
        self.late_ns = _duration_ns(late) or 0
        self.late_triggers = 0
        self.last_trigger_lag_ns: int | None = None
        self.max_trigger_lag_ns = 0
        self._unreported: list[DumpResult] = []  # written by the writer thread, not yet returned
        self._worker: _WriterThread | None = _WriterThread(self.writer.log) if background else None

    @classmethod
    def for_reader(cls, reader, keep: int | str, out_dir: str | os.PathLike[str], **kw: Any) -> "FlightRecorder":
        """A recorder whose dumps carry the metadata of an open trace.dat (replaying a file).

        ``kallsyms=False`` leaves the file's kallsyms out of the dumps (as ``--kallsyms`` not given does live).
        """
        meta = TraceMeta.from_reader(reader)
        if not kw.pop("kallsyms", True):
            meta.kallsyms = ""
        return cls(keep, out_dir, meta, page_size=reader.page_size,
                   commit_size=reader.header_page.commit_size, little=reader.little_endian,
                   cpus=reader.cpus, **kw)

    # -- the page tee --------------------------------------------------------------

    def add_pages(self, cpu: int, pages: np.ndarray, index=None) -> list[DumpResult]:
        """Keep a batch of whole pages read from ``cpu``; returns the dumps this completed."""
        arr = pages.reshape(-1).view(np.uint8) if isinstance(pages, np.ndarray) else \
            np.frombuffer(pages, dtype=np.uint8)
        if index is None and len(arr) >= self.page_size:
            index = walk_pages(arr[: len(arr) // self.page_size * self.page_size], self.page_size,
                               commit_size=self.commit_size, little=self.little)
        with self.lock:
            self._max_cpu = max(self._max_cpu, cpu)
            if index is not None and len(index.page_ts):
                # per CPU, not from the ring: a quiet CPU's pages may all be evicted, yet it still
                # has to show it is past a post window before a dump may complete
                _, last, _ = page_times(index)
                self._newest[cpu] = max(self._newest.get(cpu, last[-1]), int(last.max()))
                self.events_added += len(index.ts)
            self.ring.add(cpu, arr, index)
            if not self.pending:
                return []
            for p in self.pending:
                if self._worker is not None:
                    self._worker.submit(p.feed, cpu, arr, index)
                else:
                    p.feed(cpu, arr, index)
            return self.poll()

    def note_time(self, ts: int) -> None:
        """The trace time handlers have reached: the trigger time of ``dump()`` called without an event."""
        self.now_ts = ts

    # -- triggers ------------------------------------------------------------------

    def trigger(self, reason: str, ts: int | None = None, *, event: Any = None,
                before: str | int | float | None = None, after: str | int | float | None = None,
                force: bool = False) -> PendingDump | None:
        """Start a dump of the ring around trace time ``ts``; None when it is counted, not dumped.

        ``ts`` defaults to ``event.common_ts``, then the time given to
        :meth:`note_time`, then the newest time in the ring.  ``before`` and
        ``after`` default to the recorder's settings.
        """
        requested_at = time.monotonic()
        if ts is None and event is not None:
            ts = getattr(event, "common_ts", None)
        before_ns = _duration_ns(before, self.before_ns)
        after_ns = _duration_ns(after, self.after_ns) or 0
        with self.lock:
            newest = self.ring.newest_ts
            if ts is None:
                ts = self.now_ts if self.now_ts is not None else newest
            if ts is None:
                ts = 0  # an empty ring: the dump holds what arrives in the post window
            lag = None if newest is None else max(0, newest - int(ts))
            if lag is not None:
                self.last_trigger_lag_ns = lag
                self.max_trigger_lag_ns = max(self.max_trigger_lag_ns, lag)
                if self.late_ns and lag > self.late_ns:
                    self.late_triggers += 1
            if len([p for p in self.pending if not p.finished]) >= self.max_pending:
                self.busy += 1
                self.writer.triggers += 1
                return None
            refused = self.writer.admit(int(ts), self.ring.bytes, force=force)
            if refused is not None:
                return None
            request = DumpRequest(reason=reason, trigger_ts=int(ts), before_ns=before_ns, after_ns=after_ns,
                                  event=_event_text(event), script=self.script, lag_ns=lag,
                                  requested_at=requested_at, suppressed_before=self.writer.admitted_suppressed)
            pending = self.writer.begin(request, self._cpu_count(), page_size=self.page_size,
                                        commit_size=self.commit_size, little=self.little,
                                        lazy=self._worker is not None)
            since = None if before_ns is None else int(ts) - before_ns
            # no copy: the ring's pages are held in place (the newest --keep bytes before the trigger,
            # and any it already has after it) and written from the ring by the writer
            hold = self.ring.hold(since_ts=since, before_ts=int(ts), before_bytes=self.keep_bytes)
            for cpu in sorted(hold.slots):
                pending.feed_hold(cpu, hold, self.lock)
            if not hold.slots:
                pending._holds.append(hold)
                pending._lock = self.lock
            pending.held_at = time.monotonic()
            self.pending.append(pending)
            self.poll()
            return pending

    def dump_now(self, reason: str = "requested", requested_at: float | None = None) -> PendingDump | None:
        """A dump of everything held, ending at the newest event, written now (SIGUSR1; no cooldown).

        ``requested_at``: ``time.monotonic()`` of the request (a signal's arrival),
        so the sidecar's trigger-to-file delay counts from there.
        """
        with self.lock:
            pending = self.trigger(reason, self.ring.newest_ts, before=None, after=0, force=True)
            if pending is not None and requested_at is not None:
                pending.request.requested_at = requested_at
            if pending is not None and pending in self.pending:
                self._finish([pending])  # nothing can come after the newest event held: don't wait
            return pending

    def _cpu_count(self) -> int:
        return self.cpus if self.cpus is not None else max(self._max_cpu + 1, 1)

    # -- completing ----------------------------------------------------------------

    def poll(self) -> list[DumpResult]:
        """Write every pending dump whose post window trace time has passed."""
        with self.lock:
            if not self.pending:
                return []
            done = [p for p in self.pending if p.is_due(self._newest, self.settle_ns)]
            return self._finish(done)

    def close(self) -> list[DumpResult]:
        """Write every pending dump with what it has (end of input, SIGTERM); wait for the writer thread.

        Returns the dumps written now (with a writer thread: every dump it
        completed since the last call of :meth:`completed`).
        """
        try:
            with self.lock:
                out = self._finish(list(self.pending))
            if self._worker is not None:
                self._worker.close()
                return self.completed()
            return out
        finally:
            self.writer.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the writer thread has written every dump handed to it (True), or ``timeout``."""
        return True if self._worker is None else self._worker.wait_idle(timeout)

    def completed(self) -> list[DumpResult]:
        """Dumps the writer thread wrote since the last call (empty without a writer thread)."""
        if self._worker is None:
            return []
        with self.lock:
            out, self._unreported = self._unreported, []
        return out

    def _finish(self, done: list[PendingDump]) -> list[DumpResult]:
        out = []
        for p in done:
            self.pending.remove(p)
            if self._worker is not None:
                self._worker.submit(self._finish_in_thread, p)
                continue
            try:
                out.append(p.finish())
            except OSError:
                continue  # logged by the writer; the recorder keeps running
        self.results.extend(out)
        del self.results[:-100]  # a status needs the recent ones only: bounded for weeks-long runs
        return out

    def _finish_in_thread(self, p: PendingDump) -> None:
        try:
            result = p.finish()
        except OSError:
            return  # logged by the writer
        with self.lock:
            self.results.append(result)
            del self.results[:-100]
            self._unreported.append(result)
            del self._unreported[:-100]

    def stats(self) -> dict[str, Any]:
        """Ring and dump counters, for a status file."""
        with self.lock:
            rs = self.ring.stats()
            return {"keep_bytes": rs.keep_bytes, "bytes": rs.bytes, "pages": rs.pages, "events": rs.events,
                    "span_ns": rs.span_ns, "oldest_ts": rs.oldest_ts, "newest_ts": rs.newest_ts,
                    "events_added": self.events_added, "pending": len(self.pending), "busy": self.busy,
                    "writing": 0 if self._worker is None else self._worker.backlog,
                    "late_triggers": self.late_triggers, "last_trigger_lag_ns": self.last_trigger_lag_ns,
                    "max_trigger_lag_ns": self.max_trigger_lag_ns, **self.writer.counters()}


class _WriterThread:
    """One thread that runs the recorder's dump work in order: spooling pages, writing files.

    Work items are (function, args); an exception is logged and the next item
    runs (a failed dump must not stop the recorder).  Items of one dump keep
    their order, so its pages reach the file as they were read.
    """

    def __init__(self, log: Callable[[str], None]) -> None:
        self._q: queue.Queue = queue.Queue()
        self._log = log
        self._idle = threading.Condition()
        self.backlog = 0
        self._thread = threading.Thread(target=self._run, name="tracewatch-dump-writer", daemon=True)
        self._thread.start()

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        with self._idle:
            self.backlog += 1
        self._q.put((func, args))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            func, args = item
            try:
                func(*args)
            except Exception as e:  # noqa: BLE001 - log and go on with the next dump
                self._log(f"dump writer: {type(e).__name__}: {e}")
            finally:
                del item, func, args  # drop page arrays now, not at the next item
                with self._idle:
                    self.backlog -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self.backlog == 0, timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self.wait_idle()
            self._q.put(None)
            self._thread.join()


def _event_text(event: Any) -> str | None:
    if event is None:
        return None
    try:
        return str(event).strip()
    except Exception:  # noqa: BLE001 - a sidecar must not fail for want of an event line
        return repr(event)


def replay_pages(reader, recorder: FlightRecorder, until_ts: int, progress: dict[int, int]) -> None:
    """Feed a trace.dat's pages to ``recorder`` as a live reader would, up to trace time ``until_ts``.

    For ``tracewatch run -i FILE --keep``: before dispatching events up to
    ``until_ts``, every page whose first event is at or before it is added,
    per CPU in file order.  ``progress`` (CPU -> next page) carries the
    position from one call to the next; start with ``{}``.
    """
    ps = reader.page_size
    for cpu in range(reader.cpus):
        data, _ = reader.cpu_buffer(cpu)
        n = len(data) // ps
        start = progress.get(cpu, 0)
        if start >= n:
            continue
        idx = reader.cpu_index(cpu)
        first_ts, _, _ = page_times(idx)
        # pages of a CPU are in time order: the first page starting after until_ts ends the run
        later = np.flatnonzero(first_ts[start:n] > until_ts)
        stop = start + int(later[0]) if len(later) else n
        if stop > start:
            recorder.add_pages(cpu, data[start * ps : stop * ps])
            progress[cpu] = stop



class ReplaySource:
    """A file source whose pages reach a recorder before its events reach the handlers.

    For ``tracewatch run -i FILE --keep SIZE --out DIR``: wraps an open
    :class:`~tracewatch.sources.file.FileSource`; before each chunk is
    dispatched, :func:`replay_pages` adds the pages up to its last event, as
    a live reader would have read them.  Chunks are cut to ``chunk_events``
    so the ring is never far ahead of the handlers (a dump then holds at
    least ``--keep`` bytes before its trigger, as a live one does).
    """

    def __init__(self, source, recorder: FlightRecorder, *, chunk_events: int = 4096) -> None:
        self.source = source
        self.recorder = recorder
        self.chunk_events = chunk_events
        self.formats = source.formats
        self.context = source.context

    def chunks(self):
        reader = self.source.reader
        progress: dict[int, int] = {}
        for chunk in self.source.chunks():
            for start in range(0, len(chunk), self.chunk_events):
                part = chunk.slice(start, start + self.chunk_events)
                if len(part):
                    replay_pages(reader, self.recorder, int(part.ts[-1]), progress)
                yield part
        replay_pages(reader, self.recorder, 1 << 62, progress)

    def lost_events(self) -> dict[int, int]:
        return self.source.lost_events()
