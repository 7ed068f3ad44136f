"""Live merge: per-CPU pages in, time-ordered chunks out, behind a watermark.

Each CPU's ring buffer is in time order on its own, but CPUs are read at
different moments.  :class:`LiveMerger` collects every batch of pages as it
arrives and, once per release, walks the new pages of all CPUs in one
compiled pass (:func:`~tracewatch.formats.ring_page.walk_buffers`: every CPU's
events end to end in one set of arrays) and merges the events at or before
the *watermark* (the earliest of the CPUs' latest timestamps, so no CPU can
still deliver an earlier event) in trace-cmd's order with one compiled k-way
merge (``kernels.merge.merge_events``): no concatenation, no sort, no gather.
A CPU that has delivered nothing for ``idle_after`` release rounds stops
holding the others back (the bounded wait for idle CPUs); at the end,
:meth:`LiveMerger.release` with ``final=True`` releases everything.

Pages are not copied when they need not be: batches of a CPU that follow one
another in memory (the live reader reads into per-CPU arenas, see
:class:`~tracewatch.sources.live.LiveSource`) are walked as one run in
place, and a chunk's buffer for a CPU is that run.  What a release leaves
behind (events after the watermark) is kept as pages, not as index arrays:
the pages from the first unreleased event on are walked again at the next
release (the walk costs less than keeping and concatenating index arrays),
and ``skip`` says how many events of the first of them were already
released.  Lost events and damage are counted for newly walked pages only.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..formats.context import TraceContext
from ..formats.ring_page import walk_buffers
from ..kernels.merge import merge_events
from .chunk import EventChunk

__all__ = ["LiveMerger"]


class _CpuPending:
    """Pages of one CPU not yet fully released."""

    __slots__ = ("segs", "carry_pages", "skip", "pending", "last_ts", "idle_rounds", "got_data")

    def __init__(self) -> None:
        #: byte runs of whole pages in stream order: the carried pages (already walked) first
        self.segs: list[np.ndarray] = []
        #: pages at the start of the runs walked at an earlier release (their losses are counted)
        self.carry_pages = 0
        #: events of the first carried page released already
        self.skip = 0
        #: walked events not yet released
        self.pending = 0
        self.last_ts: int | None = None
        self.idle_rounds = 0
        self.got_data = False


def _runs(segs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The runs grouped into stretches that follow one another in memory."""
    groups = [[segs[0]]]
    end = segs[0].__array_interface__["data"][0] + len(segs[0])
    for s in segs[1:]:
        at = s.__array_interface__["data"][0]
        if at != end or s.base is not groups[-1][-1].base or s.base is None:
            groups.append([])
        groups[-1].append(s)
        end = at + len(s)
    return groups


def _join(segs: list[np.ndarray], prepend=None, cpu: int = 0) -> np.ndarray:
    """The runs as one byte array: a view when each follows the previous in the same allocation.

    ``prepend(cpu, first_of_second_stretch, nbytes)`` may give free room right
    before the second stretch: the first stretch is copied there (the
    common case of pages pending from an earlier arena), not the new pages.
    """
    first = segs[0]
    if len(segs) == 1:
        return first
    if prepend is not None:
        groups = _runs(segs)
        if len(groups) == 2:
            old = groups[0][0] if len(groups[0]) == 1 else _join(groups[0])
            room = prepend(cpu, groups[1][0], len(old))
            if room is not None:
                room[:] = old
                return _join([room] + groups[1])
    base = first.base
    end = first.__array_interface__["data"][0] + len(first)
    total = len(first)
    contiguous = base is not None
    for s in segs[1:]:
        if not contiguous:
            break
        at = s.__array_interface__["data"][0]
        if s.base is not base or at != end:
            contiguous = False
            break
        end = at + len(s)
        total += len(s)
    if contiguous and isinstance(base, np.ndarray) and base.dtype == np.uint8 and base.ndim == 1 \
            and base.flags.c_contiguous:
        start = first.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        return base[start : start + total]
    return np.concatenate(segs)


class LiveMerger:
    """Turns per-CPU page batches into time-ordered :class:`EventChunk` objects."""

    def __init__(self, context: TraceContext, cpus: Sequence[int], page_size: int, *, commit_size: int = 8,
                 little: bool = True, idle_after: int = 2, prepend=None) -> None:
        self.context = context
        #: ``prepend(cpu, pages, nbytes)``: free room right before ``pages`` or None (see _join)
        self.prepend = prepend
        self.page_size = page_size
        self.commit_size = commit_size
        self.little = little
        self.idle_after = idle_after
        self.cpus = list(cpus)
        self._pending: dict[int, _CpuPending] = {c: _CpuPending() for c in self.cpus}
        self.damage: list[tuple[int, str]] = []  # (cpu, message) of damaged pages (skipped)
        self.events_in = 0
        self.lost_events: dict[int, int] = {c: 0 for c in self.cpus}
        self.out_of_order = 0  # events that arrived behind an already released watermark
        self._released_ts: int | None = None
        #: events of each CPU in the last released chunk (index: CPU number)
        self.last_released = np.zeros(0, np.int64)
        #: cost profile: releases, pages walked (new, again), events released, seconds spent
        self.stats = {"releases": 0, "chunks": 0, "pages_new": 0, "pages_rewalked": 0, "events_released": 0,
                      "copied_bytes": 0, "walk_s": 0.0, "merge_s": 0.0}

    def add_pages(self, cpu: int, pages: np.ndarray | bytes | memoryview) -> None:
        """Keep a batch of whole pages of ``cpu``; it is walked at the next release.

        Readers may hand over one page at a time (the mmap reader does):
        walking per batch would cost more than the walk itself, so pages are
        collected and walked once per release; batches that follow one
        another in memory are walked in place, as one run.  The pages must
        not change until they are released (the live reader never reuses a
        buffer anyone still refers to).
        """
        arr = pages if isinstance(pages, np.ndarray) else np.frombuffer(pages, dtype=np.uint8)
        p = self._pending.get(cpu)
        if p is None:
            p = self._pending[cpu] = _CpuPending()
            self.lost_events.setdefault(cpu, 0)
            self.cpus.append(cpu)
        if len(arr):
            if arr.dtype != np.uint8 or arr.ndim != 1:
                arr = arr.reshape(-1).view(np.uint8)
            p.segs.append(arr)

    def watermark(self) -> int | None:
        """The latest timestamp every non-idle CPU has been read past."""
        marks = [p.last_ts for p in self._pending.values()
                 if p.last_ts is not None and p.idle_rounds < self.idle_after]
        busy = [p for p in self._pending.values() if p.idle_rounds < self.idle_after]
        if any(p.last_ts is None for p in busy):
            return None  # a CPU that may still deliver has not spoken yet
        return min(marks) if marks else max((p.last_ts for p in self._pending.values()
                                             if p.last_ts is not None), default=None)

    def release(self, *, final: bool = False) -> EventChunk | None:
        """Release every pending event at or before the watermark (all of them when ``final``)."""
        t0 = time.thread_time()
        stats = self.stats
        stats["releases"] += 1
        ps = self.page_size
        cpus = sorted(c for c, p in self._pending.items() if p.segs)
        spans = []
        for c in cpus:
            p = self._pending[c]
            span = _join(p.segs, self.prepend, c)
            if len(p.segs) > 1 and span.base is None:
                stats["copied_bytes"] += len(span)
            spans.append(span)
        walked = None
        if spans:
            idxs, (ts, off, ln, ty) = walk_buffers(spans, ps, commit_size=self.commit_size, little=self.little)
            walked = ts
        t1 = time.thread_time()
        stats["walk_s"] += t1 - t0
        # per CPU: where its events are in the shared arrays, the first not yet released
        n_slots = max(self._pending) + 1 if self._pending else 0
        starts = np.zeros(n_slots, np.int64)
        ends = np.zeros(n_slots, np.int64)
        first_new = np.zeros(n_slots, np.int64)
        base = 0
        for c, span, idx in zip(cpus, spans, idxs if spans else ()):
            p = self._pending[c]
            n = len(idx)
            n_pages = len(idx.page_first)
            carry = min(p.carry_pages, n_pages)
            fresh_from = int(idx.page_first[carry]) if carry < n_pages else n  # first event of a new page
            stats["pages_new"] += n_pages - carry
            stats["pages_rewalked"] += carry
            if carry < n_pages:
                lost = idx.page_missed[carry:]
                self.lost_events[c] += int(lost[lost > 0].sum())
            for d in idx.damage:
                if d.page >= carry:
                    self.damage.append((c, d.message))
            self.events_in += n - fresh_from
            if n > fresh_from:
                p.last_ts = int(ts[base + n - 1])
                p.got_data = True
            starts[c] = base + min(p.skip, n)
            ends[c] = base + n
            first_new[c] = base
            base += n
        for p in self._pending.values():
            p.idle_rounds = 0 if p.got_data else p.idle_rounds + 1
            p.got_data = False
        mark = None if final else self.watermark()
        # how far each CPU goes: everything when final, up to the mark otherwise, nothing without one
        stops = ends.copy()
        if not final:
            if mark is None:
                stops = starts.copy()
            else:
                m = np.uint64(max(mark, 0))
                for c in cpus:
                    s, e = int(starts[c]), int(ends[c])
                    if e > s:
                        stops[c] = s + int(np.searchsorted(ts[s:e], m, side="right"))
        # what stays: the pages from the first unreleased event on
        for c, span, idx in zip(cpus, spans, idxs if spans else ()):
            p = self._pending[c]
            b, e, stop = int(first_new[c]), int(ends[c]), int(stops[c])
            if stop >= e:
                p.segs, p.carry_pages, p.skip, p.pending = [], 0, 0, 0
                continue
            j = stop - b  # first unreleased event, in this CPU's walk
            page = int(off[stop]) // ps
            p.skip = j - int(idx.page_first[page])
            p.segs = [span[page * ps:]]
            p.carry_pages = len(idx.page_first) - page
            p.pending = e - stop
        counts = stops - starts
        total = int(counts.sum()) if len(counts) else 0
        if total == 0:
            stats["merge_s"] += time.thread_time() - t1
            return None
        buffers: list[np.ndarray] = [np.zeros(0, np.uint8)] * n_slots
        for c, span in zip(cpus, spans):
            buffers[c] = span
        # events that follow lost events, as indexes into the shared arrays (ascending)
        lost_at_parts, lost_parts = [], []
        for c, idx in zip(cpus, idxs):
            if counts[c] == 0:
                continue
            at, cnt = idx.missed_at()
            if len(at):
                at = at + first_new[c]
                keep = (at >= starts[c]) & (at < stops[c])
                lost_at_parts.append(at[keep])
                lost_parts.append(cnt[keep])
        present = np.flatnonzero(counts)
        if len(present) == 1:
            # one CPU: its stream order is the order, the arrays are slices of the walk
            c = int(present[0])
            s, e = int(starts[c]), int(stops[c])
            missed = np.zeros(total, np.int64)
            for at, cnt in zip(lost_at_parts, lost_parts):
                missed[at - s] = cnt
            chunk = EventChunk(self.context, buffers, np.full(total, c, np.int32), ts[s:e].view(np.int64),
                               off[s:e], ln[s:e], ty[s:e], missed, self.little)
        else:
            lost_at = np.concatenate(lost_at_parts) if lost_at_parts else np.zeros(0, np.int64)
            lost = np.concatenate(lost_parts) if lost_parts else np.zeros(0, np.int64)
            o_cpu = np.empty(total, np.int32)
            o_ts = np.empty(total, np.uint64)
            o_off = np.empty(total, np.int64)
            o_ln = np.empty(total, np.int32)
            o_ty = np.empty(total, np.uint16)
            o_missed = np.zeros(total, np.int64)
            merge_events(walked, off, ln, ty, starts, stops, lost_at.astype(np.int64, copy=False),
                         lost.astype(np.int64, copy=False), o_cpu, o_ts, o_off, o_ln, o_ty, o_missed)
            chunk = EventChunk(self.context, buffers, o_cpu, o_ts.view(np.int64), o_off, o_ln, o_ty, o_missed,
                               self.little)
        self.last_released = counts
        first = int(chunk.ts[0])
        if self._released_ts is not None and first < self._released_ts:
            self.out_of_order += int(np.count_nonzero(chunk.ts < self._released_ts))
        self._released_ts = int(chunk.ts[-1])
        stats["chunks"] += 1
        stats["events_released"] += total
        stats["merge_s"] += time.thread_time() - t1
        return chunk

    def warm_up(self) -> None:
        """Run the compiled walk, merge and split once on two tiny synthetic pages, so loading
        them (numba's cache) happens before tracing starts, not in the first release while
        the kernel's buffers fill."""
        ps = self.page_size
        order = "little" if self.little else "big"
        bufs = []
        tid = next(iter(self.context.formats), 1) if self.context.formats else 1
        for ts in (1000, 1001):
            page = bytearray(ps)
            page[0:8] = ts.to_bytes(8, order)
            page[8:8 + self.commit_size] = (8).to_bytes(self.commit_size, order)
            hdr = 1 if self.little else 1 << 27  # type_len 1: 4 data bytes, delta 0
            at = 8 + self.commit_size
            page[at:at + 4] = hdr.to_bytes(4, order)
            page[at + 4:at + 6] = int(tid).to_bytes(2, order)
            bufs.append(np.frombuffer(bytes(page), np.uint8))
        w = LiveMerger(self.context, [0, 1], ps, commit_size=self.commit_size, little=self.little)
        for c, b in enumerate(bufs):
            w.add_pages(c, b)
        chunk = w.release(final=True)
        if chunk is not None:
            for _batch, _pos in chunk.batches():
                pass

    @property
    def pending_events(self) -> int:
        """Events walked but not yet released (pages not yet walked are not counted)."""
        return sum(p.pending for p in self._pending.values())

    def profile(self) -> str:
        """The release cost profile, one line (for ``TRACEWATCH_PROFILE``)."""
        s = self.stats
        ev = max(s["events_released"], 1)
        return (f"merger: {s['releases']} releases, {s['chunks']} chunks, {s['events_released']} events, "
                f"{s['pages_new']} pages walked (+{s['pages_rewalked']} again), "
                f"{s['copied_bytes'] / 1e6:.1f} MB copied; walk {s['walk_s']:.3f} s, merge {s['merge_s']:.3f} s "
                f"({(s['walk_s'] + s['merge_s']) / ev * 1e6:.3f} s per million events)")
