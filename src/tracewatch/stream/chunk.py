"""A stretch of time-ordered events from every CPU: what a source hands to dispatch.

An :class:`EventChunk` is the merged index of some events (numpy arrays in
time order: cpu, ts, offset, length, type_id, missed_before) plus the per-CPU
byte buffers the offsets point into and the :class:`TraceContext` that says how
to read them.  A file source yields one or a few chunks; a live source yields
one per read cycle.  Chunks are split at timer boundaries and into per-type
:class:`EventBatch` objects here, so dispatch never loops over events in Python
unless a per-event handler asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Callable, Iterator, Sequence

import numpy as np

from ..formats.event_format import EventFormat
from ..formats.context import TraceContext
from .batch import Event, EventBatch, split_by_type

__all__ = ["EventChunk"]


@dataclass(eq=False)
class EventChunk:
    """Time-ordered events of all CPUs with the buffers they live in."""

    context: TraceContext
    buffers: Sequence[np.ndarray]  # per CPU: the bytes the offsets index
    cpu: np.ndarray
    ts: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    type_id: np.ndarray
    missed_before: np.ndarray
    little: bool = True

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def from_index(cls, context: TraceContext, buffers: Sequence[np.ndarray], index, little: bool = True
                   ) -> "EventChunk":
        """Wrap a merged index (``formats.tracedat.MergedIndex`` or alike)."""
        ts = index.ts
        # uint64 ns as int64: the same bits (what astype gives), without a copy
        ts = ts.view(np.int64) if ts.dtype == np.uint64 else ts.astype(np.int64, copy=False)
        return cls(context, buffers, index.cpu, ts, index.offset, index.length, index.type_id,
                   index.missed_before, little)

    def slice(self, start: int, stop: int) -> "EventChunk":
        s = slice(start, stop)
        return EventChunk(self.context, self.buffers, self.cpu[s], self.ts[s], self.offset[s], self.length[s],
                          self.type_id[s], self.missed_before[s], self.little)

    def split_at(self, boundaries: np.ndarray) -> list["EventChunk"]:
        """Cut before the first event at or after each boundary timestamp."""
        if len(boundaries) == 0 or len(self) == 0:
            return [self]
        cuts = np.searchsorted(self.ts, boundaries, side="left").tolist()
        out, start = [], 0
        for c in cuts + [len(self)]:
            out.append(self.slice(start, c))
            start = c
        return out

    def batches(self, only: Callable[[EventFormat], bool] | None = None) -> Iterator[tuple[EventBatch, np.ndarray]]:
        """One :class:`EventBatch` per event type, with the rows' positions in this chunk."""
        return split_by_type(self.context, self.buffers, self.cpu, self.ts, self.offset, self.length,
                             self.type_id, only=only, little=self.little)

    def events(self, only: Callable[[EventFormat], bool] | None = None) -> list[Event]:
        """Every event (of the types ``only`` accepts) as an :class:`Event`, in time order."""
        parts = [(pos, batch.events_()) for batch, pos in self.batches(only=only)]
        if not parts:
            return []
        if len(parts) == 1:
            return parts[0][1]
        order = np.argsort(np.concatenate([p for p, _ in parts]), kind="stable").tolist()
        flat: list[Event] = [ev for _, evs in parts for ev in evs]
        return list(itemgetter(*order)(flat)) if len(order) > 1 else flat

    def losses(self) -> Iterator[tuple[int, int, int]]:
        """``(cpu, count, ts)`` for each place the ring buffer lost events (count -1: unknown)."""
        where = np.flatnonzero(self.missed_before)
        for i in where.tolist():
            yield int(self.cpu[i]), int(self.missed_before[i]), int(self.ts[i])
