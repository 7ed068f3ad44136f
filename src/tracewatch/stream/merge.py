"""Live merge: per-CPU pages in, time-ordered chunks out, behind a watermark.

Each CPU's ring buffer is in time order on its own, but CPUs are read at
different moments.  :class:`LiveMerger` walks every batch of pages as it
arrives, walks each CPU's new pages once per release (one compiled pass,
:func:`~tracewatch.formats.ring_page.walk_pages`), keeps the events pending per CPU, and releases, as one
:class:`~tracewatch.stream.chunk.EventChunk`, every pending event at or before
the *watermark*: the earliest of the CPUs' latest timestamps, so no CPU can
still deliver an earlier event.  A CPU that has delivered nothing for
``idle_after`` release rounds stops holding the others back (the bounded wait
for idle CPUs); at the end, :meth:`LiveMerger.release` with ``final=True``
releases everything.

Pages are never copied into a shared buffer: a chunk refers to the per-CPU
arrays the pages arrived in, and pending pages are dropped as soon as no
pending event lives in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..formats.ring_page import walk_pages
from .batch import TraceContext
from .chunk import EventChunk

__all__ = ["LiveMerger"]


@dataclass
class _CpuPending:
    """Pages of one CPU not yet fully released, and the events in them."""

    buf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    length: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    type_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))
    missed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_ts: int | None = None
    idle_rounds: int = 0
    got_data: bool = False
    #: page batches read since the last release, walked together at release time
    unwalked: list = field(default_factory=list)


class LiveMerger:
    """Turns per-CPU page batches into time-ordered :class:`EventChunk` objects."""

    def __init__(self, context: TraceContext, cpus: Sequence[int], page_size: int, *, commit_size: int = 8,
                 little: bool = True, idle_after: int = 2) -> None:
        self.context = context
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

    def add_pages(self, cpu: int, pages: np.ndarray | bytes | memoryview) -> None:
        """Keep a batch of whole pages of ``cpu``; it is walked at the next release.

        Readers may hand over one page at a time (the mmap reader does): walking
        and appending per batch would cost more than the walk itself, so pages
        are collected and walked once per release.
        """
        arr = pages if isinstance(pages, np.ndarray) else np.frombuffer(pages, dtype=np.uint8)
        p = self._pending.get(cpu)
        if p is None:
            p = self._pending[cpu] = _CpuPending()
            self.lost_events.setdefault(cpu, 0)
            self.cpus.append(cpu)
        if len(arr):
            p.unwalked.append(arr)

    def _walk_unwalked(self, cpu: int, p: _CpuPending) -> None:
        if not p.unwalked:
            return
        arr = p.unwalked[0] if len(p.unwalked) == 1 else np.concatenate(p.unwalked)
        p.unwalked = []
        idx = walk_pages(arr, self.page_size, commit_size=self.commit_size, little=self.little)
        for d in idx.damage:
            self.damage.append((cpu, d.message))
        lost = idx.page_missed
        self.lost_events[cpu] += int(lost[lost > 0].sum())
        if len(idx) == 0:
            return
        ts = idx.ts.astype(np.int64)
        if len(p.ts) == 0:
            p.buf, p.ts, p.offset, p.length = arr, ts, idx.offset, idx.length
            p.type_id, p.missed = idx.type_id, idx.missed_before
        else:
            base = len(p.buf)
            p.buf = np.concatenate((p.buf, arr))
            p.ts = np.concatenate((p.ts, ts))
            p.offset = np.concatenate((p.offset, idx.offset + base))
            p.length = np.concatenate((p.length, idx.length))
            p.type_id = np.concatenate((p.type_id, idx.type_id))
            p.missed = np.concatenate((p.missed, idx.missed_before))
        p.last_ts = int(ts[-1])
        p.got_data = True
        self.events_in += len(idx)

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
        for cpu, p in self._pending.items():
            self._walk_unwalked(cpu, p)
        for p in self._pending.values():
            p.idle_rounds = 0 if p.got_data else p.idle_rounds + 1
            p.got_data = False
        mark = None if final else self.watermark()
        if not final and mark is None:
            return None
        parts = []
        for cpu in sorted(self._pending):
            p = self._pending[cpu]
            if len(p.ts) == 0:
                continue
            k = len(p.ts) if final else int(np.searchsorted(p.ts, mark, side="right"))
            if k == 0:
                continue
            parts.append((cpu, p.buf, p.ts[:k], p.offset[:k], p.length[:k], p.type_id[:k], p.missed[:k]))
            self._drop_released(p, k)
        if not parts:
            return None
        n_cpu = max(self._pending) + 1
        buffers: list[np.ndarray] = [np.zeros(0, np.uint8)] * n_cpu
        for cpu, buf, *_ in parts:
            buffers[cpu] = buf
        cpu_col = np.concatenate([np.full(len(t), c, np.int32) for c, _, t, *_ in parts])
        ts = np.concatenate([x[2] for x in parts])
        order = np.argsort(ts, kind="stable")  # parts are in CPU order: ties go to the lower CPU
        chunk = EventChunk(self.context, buffers, cpu_col[order], ts[order],
                           np.concatenate([x[3] for x in parts])[order],
                           np.concatenate([x[4] for x in parts])[order],
                           np.concatenate([x[5] for x in parts])[order],
                           np.concatenate([x[6] for x in parts])[order], self.little)
        first = int(chunk.ts[0])
        if self._released_ts is not None and first < self._released_ts:
            self.out_of_order += int(np.count_nonzero(chunk.ts < self._released_ts))
        self._released_ts = int(chunk.ts[-1])
        return chunk

    def _drop_released(self, p: _CpuPending, k: int) -> None:
        """Forget the first ``k`` events, and the pages only they lived in."""
        p.ts, p.offset, p.length = p.ts[k:], p.offset[k:], p.length[k:]
        p.type_id, p.missed = p.type_id[k:], p.missed[k:]
        if len(p.ts) == 0:
            p.buf = np.zeros(0, np.uint8)
            p.offset = np.zeros(0, np.int64)
            return
        drop = int(p.offset[0]) // self.page_size * self.page_size
        if drop:
            # the released chunk keeps the old array alive; the pending side takes a view
            p.buf = p.buf[drop:]
            p.offset = p.offset - drop

    @property
    def pending_events(self) -> int:
        """Events walked but not yet released (pages not yet walked are not counted)."""
        return sum(len(p.ts) for p in self._pending.values())
