"""The flight recorder's memory: the newest raw ring-buffer pages of every CPU, bounded in bytes.

A :class:`PageRing` keeps whole pages exactly as ``trace_pipe_raw`` returned
them (no decoding, no re-encoding), so a dump is a copy of pages.  Storage is
one slab of ``keep // page_size`` page slots allocated once: pages are copied
into free slots and a full ring frees slots by evicting old pages.  The slab
is ``np.empty``, so untouched slots cost no resident memory; once the ring is
full, memory stays at ``keep`` plus per-slot metadata (a few numpy arrays of
``n_slots`` entries) and per-CPU deques of at most ``n_slots`` slot numbers in
all: nothing grows with time.

Eviction is by time, not per CPU: the page evicted is the one whose newest
event is the oldest among every CPU's oldest page.  A busy CPU fills pages
faster than a quiet one, so equal shares of bytes would give the quiet CPU
hours of history and the busy one milliseconds; evicting by time gives every
CPU the same time span as far as the budget allows, which is what a reader of
the dump expects ("the last N seconds on all CPUs").

Per page the ring records (from one compiled :func:`walk_pages` per added
batch, or from a :class:`PageIndex` the caller already has): the header
timestamp, the first and last event timestamps, the event count and the
events the kernel lost before it (``page_missed``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..formats.ring_page import PageIndex, walk_pages
from ..units import parse_size

__all__ = ["PageRing", "RingHold", "RingStats", "page_times", "parse_size"]

_NO_TS = np.iinfo(np.int64).max

def page_times(index: PageIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per page of a walk: (first event ts, last event ts, event count), int64.

    A page without events gets its header timestamp for both times, so it
    sorts where it was written.
    """
    n_pages = len(index.page_first)
    first = index.page_first
    nxt = np.append(first[1:], len(index.ts)) if n_pages else first
    counts = (nxt - first).astype(np.int64)
    ts = index.ts.astype(np.int64)
    header = index.page_ts.astype(np.int64)
    has = counts > 0
    first_ts = header.copy()
    last_ts = header.copy()
    first_ts[has] = ts[first[has]]
    last_ts[has] = ts[nxt[has] - 1]
    return first_ts, last_ts, counts


@dataclass(frozen=True)
class RingStats:
    """What the ring holds: for a status line and a dump's sidecar."""

    keep_bytes: int
    bytes: int  # page bytes held (pages * page_size)
    pages: int
    events: int
    oldest_ts: int | None  # first event of the oldest page held (any CPU)
    newest_ts: int | None  # last event of the newest page held (any CPU)
    pages_added: int
    pages_evicted: int
    per_cpu_pages: dict[int, int]

    @property
    def span_ns(self) -> int:
        """Time covered by the pages held (0 when empty)."""
        if self.oldest_ts is None or self.newest_ts is None:
            return 0
        return self.newest_ts - self.oldest_ts


class PageRing:
    """Per-CPU rings of raw pages sharing one byte budget, ``keep`` (bytes or ``"64M"``).

    ``page_size`` is the ring-buffer sub-buffer size; ``commit_size`` and
    ``little`` describe the kernel's page header (header_page), as for
    :func:`walk_pages`.  ``keep`` is rounded down to whole pages and must hold
    at least one page.
    """

    def __init__(self, keep: int | str, page_size: int = 4096, *, commit_size: int = 8,
                 little: bool = True) -> None:
        self.keep_bytes = parse_size(keep)
        self.page_size = page_size
        self.commit_size = commit_size
        self.little = little
        self.n_slots = self.keep_bytes // page_size
        if self.n_slots < 1:
            raise ValueError(f"--keep {self.keep_bytes} bytes holds no {page_size}-byte page")
        # np.empty: the kernel gives the slab memory only as slots are first written
        self._slab = np.empty((self.n_slots, page_size), np.uint8)
        self._first_ts = np.zeros(self.n_slots, np.int64)
        self._last_ts = np.zeros(self.n_slots, np.int64)
        self._events = np.zeros(self.n_slots, np.int64)
        self._missed = np.zeros(self.n_slots, np.int64)  # page_missed of each slot's page
        self._pins = np.zeros(self.n_slots, np.int32)  # holds (dumps being written) on each slot
        self._holds: list[RingHold] = []
        self._free: deque[int] = deque(range(self.n_slots))
        self._cpus: dict[int, deque[int]] = {}  # CPU -> its slots, oldest first
        self._held_events = 0
        self.pages_added = 0
        self.pages_evicted = 0

    # -- adding ----------------------------------------------------------------

    def add(self, cpu: int, pages: np.ndarray | bytes | bytearray | memoryview,
            index: PageIndex | None = None) -> None:
        """Keep a batch of whole pages of ``cpu`` (oldest first), evicting the oldest pages of any CPU.

        ``index`` is the batch's :func:`walk_pages` result when the caller has
        it (the walk is then not repeated).  Bytes after the last whole page
        are ignored.  The pages are copied: the caller may reuse ``pages``.
        """
        arr = pages if isinstance(pages, np.ndarray) else np.frombuffer(pages, dtype=np.uint8)
        arr = arr.reshape(-1).view(np.uint8)
        n = len(arr) // self.page_size
        if n == 0:
            return
        if index is None:
            index = walk_pages(arr[: n * self.page_size], self.page_size, commit_size=self.commit_size,
                               little=self.little)
        first_ts, last_ts, counts = page_times(index)
        missed = np.asarray(index.page_missed, np.int64)
        rows = arr[: n * self.page_size].reshape(n, self.page_size)
        if n > self.n_slots:
            # a batch larger than the whole ring: only its newest pages can stay
            skip = n - self.n_slots
            rows, first_ts, last_ts, counts = rows[skip:], first_ts[skip:], last_ts[skip:], counts[skip:]
            missed = missed[skip:]
            self.pages_added += skip
            self.pages_evicted += skip
            n = self.n_slots
        while len(self._free) < n:
            self._evict_one()
        slots = np.fromiter((self._free.popleft() for _ in range(n)), np.int64, n)
        if self._holds:
            self._save_held(slots)
        self._slab[slots] = rows
        self._missed[slots] = missed
        self._first_ts[slots] = first_ts
        self._last_ts[slots] = last_ts
        self._events[slots] = counts
        self._cpus.setdefault(cpu, deque()).extend(slots.tolist())
        self._held_events += int(counts.sum())
        self.pages_added += n

    def _evict_one(self) -> None:
        """Free the slot of the page whose newest event is the oldest among the CPUs' oldest pages."""
        best_cpu = -1
        best_ts = _NO_TS
        for cpu, q in self._cpus.items():
            if q:
                t = self._last_ts[q[0]]
                if t < best_ts or best_cpu < 0:
                    best_cpu, best_ts = cpu, t
        slot = self._cpus[best_cpu].popleft()
        self._held_events -= int(self._events[slot])
        self._free.append(slot)
        self.pages_evicted += 1

    def _save_held(self, slots: np.ndarray) -> None:
        """Before ``slots`` are overwritten: give every hold on them its own copy of the page."""
        pinned = slots[self._pins[slots] > 0]
        for slot in pinned.tolist():
            page = self._slab[slot].copy()
            for h in self._holds:
                if h._member[slot]:
                    h._member[slot] = False
                    h.saved[slot] = page
                    self._pins[slot] -= 1

    def clear(self) -> None:
        """Forget every page (the slab stays allocated)."""
        for q in self._cpus.values():
            self._free.extend(q)
            q.clear()
        self._held_events = 0

    # -- reading ---------------------------------------------------------------

    @property
    def cpus(self) -> list[int]:
        """CPUs that ever added pages, in order."""
        return sorted(self._cpus)

    def snapshot(self, since_ts: int | None = None, until_ts: int | None = None) -> dict[int, list[np.ndarray]]:
        """Copies of the pages to dump, per CPU, oldest first (one array per CPU).

        ``since_ts``: only pages holding an event at or after it (their last
        event is not older), so the dump starts with whole pages at or before
        ``since_ts``; a trigger at T with ``before`` B passes T - B.
        ``until_ts``: only pages whose first event is at or before it.
        None keeps everything.  The copies stay valid after later :meth:`add`.
        """
        return {cpu: [self._slab[slots].reshape(-1)] for cpu, slots in self._select(since_ts, until_ts).items()}

    def _select(self, since_ts: int | None, until_ts: int | None) -> dict[int, np.ndarray]:
        """Per CPU, the slots (oldest first) of the pages :meth:`snapshot` and :meth:`hold` take."""
        out: dict[int, np.ndarray] = {}
        for cpu in sorted(self._cpus):
            q = self._cpus[cpu]
            if not q:
                continue
            slots = np.fromiter(q, np.int64, len(q))
            keep = np.ones(len(slots), bool)
            if since_ts is not None:
                keep &= self._last_ts[slots] >= since_ts
            if until_ts is not None:
                keep &= self._first_ts[slots] <= until_ts
            if keep.any():
                out[cpu] = slots[keep]
        return out

    def hold(self, since_ts: int | None = None, *, until_ts: int | None = None,
             before_ts: int | None = None, before_bytes: int | None = None) -> "RingHold":
        """The pages to dump, held in place (no copy): per CPU their slots, oldest first.

        ``since_ts``/``until_ts`` select as :meth:`snapshot` does.  ``before_bytes``
        with ``before_ts``: of the pages that end at or before ``before_ts``
        (a trigger), only the newest ``before_bytes`` (by time across CPUs, as
        eviction would choose); later pages are all kept.  The slots stay
        valid until :meth:`RingHold.release`: a held slot that :meth:`add`
        reuses is first copied into the hold (rare: a dump is written much
        faster than the ring turns over).  The caller serialises this with
        :meth:`add` (the recorder's lock), and reads the slab only under it.
        """
        per_cpu = self._select(since_ts, until_ts)
        if before_bytes is not None and before_ts is not None and per_cpu:
            limit = max(before_bytes // self.page_size, 0)
            every = np.concatenate(list(per_cpu.values()))
            before = every[self._last_ts[every] <= before_ts]
            if len(before) > limit:
                # the newest `limit` pages before the trigger: drop those with the oldest last event
                order = np.argsort(self._last_ts[before], kind="stable")
                drop = np.zeros(self.n_slots, bool)
                drop[before[order[: len(before) - limit]]] = True
                per_cpu = {cpu: s[~drop[s]] for cpu, s in per_cpu.items()}
                per_cpu = {cpu: s for cpu, s in per_cpu.items() if len(s)}
        h = RingHold(self, per_cpu)
        self._holds.append(h)
        return h

    def _release(self, h: "RingHold") -> None:
        if h in self._holds:
            self._holds.remove(h)
            held = np.flatnonzero(h._member)
            self._pins[held] -= 1
            h._member[:] = False

    def stats(self) -> RingStats:
        """Bytes, pages, events held and their time span."""
        per_cpu = {cpu: len(q) for cpu, q in sorted(self._cpus.items())}
        heads = [q[0] for q in self._cpus.values() if q]
        tails = [q[-1] for q in self._cpus.values() if q]
        pages = sum(per_cpu.values())
        return RingStats(
            keep_bytes=self.keep_bytes,
            bytes=pages * self.page_size,
            pages=pages,
            events=self._held_events,
            oldest_ts=int(self._first_ts[heads].min()) if heads else None,
            newest_ts=int(self._last_ts[tails].max()) if tails else None,
            pages_added=self.pages_added,
            pages_evicted=self.pages_evicted,
            per_cpu_pages=per_cpu,
        )

    @property
    def bytes(self) -> int:
        """Page bytes held now (never more than ``keep``)."""
        return (self.n_slots - len(self._free)) * self.page_size

    @property
    def newest_ts(self) -> int | None:
        """The newest event time held on any CPU."""
        tails = [q[-1] for q in self._cpus.values() if q]
        return int(self._last_ts[tails].max()) if tails else None

    def newest_ts_per_cpu(self) -> dict[int, int]:
        """Each CPU's newest event time held (CPUs without pages left out)."""
        return {cpu: int(self._last_ts[q[-1]]) for cpu, q in self._cpus.items() if q}

    def __len__(self) -> int:
        """Pages held."""
        return self.n_slots - len(self._free)

    def __repr__(self) -> str:
        return f"<PageRing {len(self)}/{self.n_slots} pages of {self.page_size} bytes>"


class RingHold:
    """Pages of a :class:`PageRing` kept for one dump without copying them (see :meth:`PageRing.hold`).

    ``slots``: CPU -> slot numbers, oldest first; per-page metadata comes
    from the ring (no walk of the pages again).  Slots the ring had to reuse
    before the dump was written have their page in ``saved``.
    """

    def __init__(self, ring: PageRing, slots: dict[int, np.ndarray]) -> None:
        self.ring = ring
        self.slots = slots
        self.saved: dict[int, np.ndarray] = {}
        self._member = np.zeros(ring.n_slots, bool)
        for s in slots.values():
            self._member[s] = True
            ring._pins[s] += 1
        self.released = False

    def times(self, cpu: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(first event ts, last event ts, events, page_missed) of ``cpu``'s held pages."""
        s = self.slots[cpu]
        r = self.ring
        return r._first_ts[s].copy(), r._last_ts[s].copy(), r._events[s].copy(), r._missed[s].copy()

    def views(self, cpu: int, lo: int = 0, hi: int | None = None) -> list[memoryview]:
        """Memoryviews of pages ``lo:hi`` of ``cpu``: runs of adjacent slots as one view each.

        Valid only while the ring's owner lock is held (the slab is reused after).
        """
        s = self.slots[cpu][lo:hi]
        if not len(s):
            return []
        ring = self.ring
        slab = ring._slab
        out: list[memoryview] = []
        if self.saved:
            is_saved = np.fromiter((int(x) in self.saved for x in s), bool, len(s))
        else:
            is_saved = None
        # boundaries where the next slot is not adjacent (or a saved page breaks the run)
        brk = np.flatnonzero(np.diff(s) != 1) + 1
        if is_saved is not None and is_saved.any():
            sv = np.flatnonzero(is_saved)
            brk = np.union1d(brk, np.union1d(sv, sv + 1))
            brk = brk[(brk > 0) & (brk < len(s))]
        starts = np.concatenate(([0], brk)).tolist()
        ends = np.concatenate((brk, [len(s)])).tolist()
        for a, b in zip(starts, ends):
            first = int(s[a])
            if is_saved is not None and is_saved[a]:
                out.append(memoryview(self.saved[first]))
            else:
                out.append(memoryview(slab[first : first + (b - a)]).cast("B"))
        return out

    def iovecs(self, cpu: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """``struct iovec`` array (address, length: uint64 pairs) of pages ``lo:hi`` of ``cpu``.

        Built without a Python loop over pages (runs of adjacent slots become
        one entry), for one ``writev`` call per 1024 entries made without the
        GIL.  Valid only while the ring's owner lock is held and this hold
        lives (saved pages are kept by it).
        """
        s = self.slots[cpu][lo:hi]
        ps = self.ring.page_size
        if not len(s):
            return np.empty((0, 2), np.uint64)
        base = self.ring._slab.ctypes.data
        addr = base + s.astype(np.uint64) * np.uint64(ps)
        if self.saved:
            for i in np.flatnonzero(np.fromiter((int(x) in self.saved for x in s), bool, len(s))).tolist():
                addr[i] = self.saved[int(s[i])].ctypes.data
        # a page continues the previous entry when its address follows it
        new = np.ones(len(s), bool)
        new[1:] = addr[1:] != addr[:-1] + np.uint64(ps)
        starts = np.flatnonzero(new)
        iov = np.empty((len(starts), 2), np.uint64)
        iov[:, 0] = addr[starts]
        iov[:, 1] = np.diff(np.append(starts, len(s))).astype(np.uint64) * np.uint64(ps)
        return iov

    def pages(self, cpu: int) -> int:
        return len(self.slots.get(cpu, ()))

    def release(self) -> None:
        """The dump is written (or dropped): the ring may reuse the slots."""
        if not self.released:
            self.released = True
            self.ring._release(self)
            self.saved.clear()
