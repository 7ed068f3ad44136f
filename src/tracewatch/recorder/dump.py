"""Flight-recorder dumps: pages from the ring (and the post window) to a trace.dat plus a JSON sidecar.

Life of a dump::

    FlightRecorder.trigger(reason, ts)           a handler called dump(), or SIGUSR1
      -> DumpWriter.admit()                      cooldown? disk nearly full? (counted, not dumped)
      -> PendingDump                             the ring's snapshot goes to a TraceDatWriter spool now
      -> PendingDump.feed(cpu, pages)            every page batch read after the trigger
      -> PendingDump.finish()                    trace time passed trigger + after: trim, write, rename
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
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ..formats.ring_page import COMMIT_MASK, RB_MISSED_EVENTS, RB_MISSED_STORED, walk_pages
from ..formats.tracedat_writer import TraceDatWriter, TraceMeta
from .page_ring import PageRing, page_times, parse_size

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
    "replay_pages",
]

#: Dumps stop when the output file system would have less than this free.
DEFAULT_MIN_FREE_BYTES = 256 << 20

#: How long a post window may wait for a CPU that delivers nothing (trace time, ns).
DEFAULT_SETTLE_NS = 1_000_000_000

_NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z-[a-z0-9-]+(?:-\d+)?)\.(dat|json)$")


def _duration_ns(value: str | int | float | None, default: int | None = 0) -> int | None:
    if value is None:
        return default
    from ..script.api import parse_duration

    ns = parse_duration(value)
    if ns < 0:
        raise ValueError(f"duration {value!r} is negative")
    return ns


def _version() -> str:
    from .. import __version__

    return __version__


def _default_log(message: str) -> None:
    # one line per message on stderr: journald stores each as one entry
    print(f"tracewatch: flight: {message}", file=sys.stderr, flush=True)


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


class PendingDump:
    """One dump being collected: pre-trigger pages already spooled, post-window pages still coming.

    Made by :meth:`DumpWriter.begin`; fed by :meth:`FlightRecorder.add_pages`.
    Pages entirely inside the window go to the :class:`TraceDatWriter` spool
    at once; only a CPU's page that reaches past the end is held (copied),
    to be cut at :meth:`finish`.  A CPU whose page starts after the end is
    done: later pages of it cannot be in the window.
    """

    def __init__(self, owner: "DumpWriter", request: DumpRequest, path: str, writer: TraceDatWriter, *,
                 page_size: int, commit_size: int, little: bool) -> None:
        self.owner = owner
        self.request = request
        self.path = path
        self.end_ts = request.end_ts
        self._writer = writer
        self._page_size = page_size
        self._commit_size = commit_size
        self._little = little
        self._held: dict[int, list[np.ndarray]] = {}
        self._done_cpus: set[int] = set()
        self.events_per_cpu: dict[int, int] = {}
        self.pages = 0
        self.events_lost = 0
        self.pages_with_unknown_loss = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.finished = False
        self.result: DumpResult | None = None

    def feed(self, cpu: int, pages: np.ndarray, index=None) -> None:
        """Take a batch of whole pages of ``cpu`` read after the trigger (or the ring's snapshot)."""
        if self.finished or cpu in self._done_cpus or cpu >= self._writer.cpus:
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
            self._spool(cpu, arr[: k * self._page_size], first_ts[:k], last_ts[:k], counts[:k],
                        index.page_missed[:k])
        if k < n:
            rest = np.flatnonzero(first_ts[k:] > self.end_ts)
            stop = k + int(rest[0]) if len(rest) else n
            if stop > k:
                self._held.setdefault(cpu, []).append(arr[k * self._page_size : stop * self._page_size].copy())
            if stop < n:
                self._done_cpus.add(cpu)

    def _spool(self, cpu: int, arr: np.ndarray, first_ts: np.ndarray, last_ts: np.ndarray, counts: np.ndarray,
               missed: np.ndarray) -> None:
        self._writer.add_pages(cpu, arr)
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
            self._writer.close()
        except BaseException:
            self.owner._failed(self)
            raise
        self.result = self.owner._completed(self, time.monotonic() - started)
        return self.result

    def abort(self) -> None:
        """Drop the dump: nothing is written."""
        self.finished = True
        self._held.clear()
        self._writer.abort()

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
    changes are logged once.  ``settings`` go into every sidecar (keep,
    before, after, ...).  ``log`` takes one line per message.
    """

    def __init__(self, out_dir: str | os.PathLike[str], meta: TraceMeta | Callable[[], TraceMeta], *,
                 max_dumps: int | None = None, min_free_bytes: int | str = DEFAULT_MIN_FREE_BYTES,
                 cooldown: str | int | float | None = None, version: int = 6, compression: str | None = None,
                 settings: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> None:
        self.out_dir = os.fspath(out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self._meta = meta
        if max_dumps is not None and max_dumps < 1:
            raise ValueError("max_dumps must be at least 1")
        self.max_dumps = max_dumps
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
        self.rotated = 0
        self._suppressed_since_dump = 0
        self._last_admitted_ts: int | None = None
        self._disk_full = False
        self.last_result: DumpResult | None = None

    # -- policy ------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still use on the output file system."""
        st = os.statvfs(self.out_dir)
        return st.f_bavail * st.f_frsize

    def admit(self, trigger_ts: int, estimated_bytes: int = 0) -> str | None:
        """Count a trigger; None if it may be dumped, else why not (``"cooldown"``, ``"disk full"``)."""
        self.triggers += 1
        if (self.cooldown_ns and self._last_admitted_ts is not None
                and 0 <= trigger_ts - self._last_admitted_ts < self.cooldown_ns):
            self.suppressed_cooldown += 1
            self._suppressed_since_dump += 1
            return "cooldown"
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
        return None

    # -- writing -----------------------------------------------------------------

    def _unique_stem(self, request: DumpRequest) -> str:
        stem = dump_file_stem(request.wall_time, request.reason)
        candidate, n = stem, 1
        while (os.path.exists(os.path.join(self.out_dir, candidate + ".dat"))
               or os.path.exists(os.path.join(self.out_dir, candidate + ".json"))):
            n += 1
            candidate = f"{stem}-{n}"
        return candidate

    def begin(self, request: DumpRequest, cpus: int, *, page_size: int, commit_size: int = 8,
              little: bool = True) -> PendingDump:
        """Start a dump (after :meth:`admit`): its file gets pages from :meth:`PendingDump.feed`."""
        meta = self._meta() if callable(self._meta) else self._meta
        if meta.page_size != page_size:
            meta = TraceMeta(**{**asdict(meta), "page_size": page_size})
        stem = self._unique_stem(request)
        path = os.path.join(self.out_dir, stem + ".dat")
        writer = TraceDatWriter(path, meta, max(cpus, 1), version=self.version, compression=self.compression)
        return PendingDump(self, request, path, writer, page_size=page_size, commit_size=commit_size,
                           little=little)

    def _failed(self, pending: PendingDump) -> None:
        self.failed += 1
        self.log(f"dump {os.path.basename(pending.path)} failed: {sys.exc_info()[1]}")

    def _completed(self, pending: PendingDump, write_seconds: float) -> DumpResult:
        req = pending.request
        sidecar = pending.path[: -len(".dat")] + ".json"
        result = DumpResult(
            path=pending.path, sidecar=sidecar, reason=req.reason, trigger_ts=req.trigger_ts,
            events=pending.events, events_per_cpu=dict(sorted(pending.events_per_cpu.items())),
            bytes=os.path.getsize(pending.path), pages=pending.pages, events_lost=pending.events_lost,
            pages_with_unknown_loss=pending.pages_with_unknown_loss, first_ts=pending.first_ts,
            last_ts=pending.last_ts, write_seconds=write_seconds)
        doc = {
            "file": os.path.basename(pending.path),
            "reason": req.reason,
            "trigger": {
                "ts_ns": req.trigger_ts,
                "time": _iso(req.wall_time),
                "event": req.event,
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
            "triggers_suppressed_before": self._suppressed_since_dump,
            "settings": {**self.settings, "cooldown_ns": self.cooldown_ns, "max_dumps": self.max_dumps},
            "tracewatch_version": _version(),
            "written": _iso(time.time()),
        }
        _write_atomic(sidecar, (json.dumps(doc, indent=2) + "\n").encode())
        self._suppressed_since_dump = 0
        self.dumps_written += 1
        self.last_result = result
        self.log(f"dump {doc['file']}: {result.events} events, {result.bytes >> 10} KiB, "
                 f"reason {req.reason!r}")
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
        """For a status line: triggers, dumps written, suppressed by cooldown, skipped for space, failed."""
        return {"triggers": self.triggers, "dumps": self.dumps_written,
                "suppressed_cooldown": self.suppressed_cooldown, "skipped_disk_full": self.skipped_disk_full,
                "failed": self.failed, "rotated": self.rotated}


def _iso(wall: float) -> str:
    ms = int(round(wall * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _write_atomic(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
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
    busy); the rest go to :class:`DumpWriter`.
    """

    def __init__(self, keep: int | str, out_dir: str | os.PathLike[str],
                 meta: TraceMeta | Callable[[], TraceMeta], *, page_size: int = 4096, commit_size: int = 8,
                 little: bool = True, cpus: int | None = None, before: str | int | float | None = None,
                 after: str | int | float | None = 0, max_dumps: int | None = None,
                 cooldown: str | int | float | None = None, min_free_bytes: int | str = DEFAULT_MIN_FREE_BYTES,
                 settle: str | int | float | None = None, script: str | None = None, version: int = 6,
                 compression: str | None = None, max_pending: int = 4,
                 log: Callable[[str], None] | None = None) -> None:
        self.ring = PageRing(keep, page_size, commit_size=commit_size, little=little)
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
            version=version, compression=compression, log=log,
            settings={"keep_bytes": self.ring.keep_bytes, "before_ns": self.before_ns, "after_ns": self.after_ns,
                      "page_size": page_size})
        self.pending: list[PendingDump] = []
        self.results: list[DumpResult] = []
        self.busy = 0  # triggers refused because max_pending dumps were collecting
        self.now_ts: int | None = None  # trace time the dispatcher has reached (note_time)
        self._max_cpu = -1
        self._newest: dict[int, int] = {}  # CPU -> newest event time it delivered

    @classmethod
    def for_reader(cls, reader, keep: int | str, out_dir: str | os.PathLike[str], **kw: Any) -> "FlightRecorder":
        """A recorder whose dumps carry the metadata of an open trace.dat (replaying a file)."""
        return cls(keep, out_dir, TraceMeta.from_reader(reader), page_size=reader.page_size,
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
        self._max_cpu = max(self._max_cpu, cpu)
        if index is not None and len(index.page_ts):
            # per CPU, not from the ring: a quiet CPU's pages may all be evicted, yet it still
            # has to show it is past a post window before a dump may complete
            _, last, _ = page_times(index)
            self._newest[cpu] = max(self._newest.get(cpu, last[-1]), int(last.max()))
        self.ring.add(cpu, arr, index)
        for p in self.pending:
            p.feed(cpu, arr, index)
        return self.poll() if self.pending else []

    def note_time(self, ts: int) -> None:
        """The trace time handlers have reached: the trigger time of ``dump()`` called without an event."""
        self.now_ts = ts

    # -- triggers ------------------------------------------------------------------

    def trigger(self, reason: str, ts: int | None = None, *, event: Any = None,
                before: str | int | float | None = None, after: str | int | float | None = None
                ) -> PendingDump | None:
        """Start a dump of the ring around trace time ``ts``; None when it is counted, not dumped.

        ``ts`` defaults to ``event.common_ts``, then the time given to
        :meth:`note_time`, then the newest time in the ring.  ``before`` and
        ``after`` default to the recorder's settings.
        """
        if ts is None and event is not None:
            ts = getattr(event, "common_ts", None)
        if ts is None:
            ts = self.now_ts if self.now_ts is not None else self.ring.newest_ts
        if ts is None:
            ts = 0  # an empty ring: the dump holds what arrives in the post window
        before_ns = _duration_ns(before, self.before_ns)
        after_ns = _duration_ns(after, self.after_ns) or 0
        if len([p for p in self.pending if not p.finished]) >= self.max_pending:
            self.busy += 1
            self.writer.triggers += 1
            return None
        refused = self.writer.admit(int(ts), self.ring.bytes)
        if refused is not None:
            return None
        request = DumpRequest(reason=reason, trigger_ts=int(ts), before_ns=before_ns, after_ns=after_ns,
                              event=_event_text(event), script=self.script)
        pending = self.writer.begin(request, self._cpu_count(), page_size=self.page_size,
                                    commit_size=self.commit_size, little=self.little)
        since = None if before_ns is None else int(ts) - before_ns
        for cpu, arrays in self.ring.snapshot(since_ts=since).items():
            for arr in arrays:
                pending.feed(cpu, arr)
        self.pending.append(pending)
        self.poll()
        return pending

    def dump_now(self, reason: str = "requested") -> PendingDump | None:
        """A dump of everything held, ending at the newest event, written now (SIGUSR1)."""
        pending = self.trigger(reason, self.ring.newest_ts, before=None, after=0)
        if pending is not None and pending in self.pending:
            self._finish([pending])  # nothing can come after the newest event held: don't wait
        return pending

    def _cpu_count(self) -> int:
        return self.cpus if self.cpus is not None else max(self._max_cpu + 1, 1)

    # -- completing ----------------------------------------------------------------

    def poll(self) -> list[DumpResult]:
        """Write every pending dump whose post window trace time has passed."""
        if not self.pending:
            return []
        done = [p for p in self.pending if p.is_due(self._newest, self.settle_ns)]
        return self._finish(done)

    def close(self) -> list[DumpResult]:
        """Write every pending dump with what it has (end of input, SIGTERM)."""
        return self._finish(list(self.pending))

    def _finish(self, done: list[PendingDump]) -> list[DumpResult]:
        out = []
        for p in done:
            self.pending.remove(p)
            try:
                out.append(p.finish())
            except OSError:
                continue  # logged by the writer; the recorder keeps running
        self.results.extend(out)
        del self.results[:-100]  # a status needs the recent ones only: bounded for weeks-long runs
        return out

    def stats(self) -> dict[str, Any]:
        """Ring and dump counters, for a status file."""
        rs = self.ring.stats()
        return {"keep_bytes": rs.keep_bytes, "bytes": rs.bytes, "pages": rs.pages, "events": rs.events,
                "span_ns": rs.span_ns, "oldest_ts": rs.oldest_ts, "newest_ts": rs.newest_ts,
                "pending": len(self.pending), "busy": self.busy, **self.writer.counters()}


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

