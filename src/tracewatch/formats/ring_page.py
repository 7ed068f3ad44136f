"""Ring-buffer page walking: ftrace sub-buffer pages to per-event numpy arrays.

A ring-buffer page (a "sub-buffer"; 4 KiB unless ``buffer_subbuf_size_kb`` says
otherwise) is what ``trace_pipe_raw`` returns and what trace.dat stores::

    u64   timestamp        absolute time of the page's first event
    long  commit           bytes of event data; bit 31 RB_MISSED_EVENTS, bit 30
                           RB_MISSED_STORED (the lost count, a long, then sits
                           right after the data); only the low 27 bits are size
    ...   events           ``commit & COMMIT_MASK`` bytes

Every event starts with a u32 header: ``type_len`` (5 bits) and ``time_delta``
(27 bits); on a little-endian kernel ``type_len`` is the low 5 bits, on a
big-endian one the high 5 bits.  ``type_len``:

* 0: data; the next u32 is ``array[0]``, the record length plus 4 (the word
  itself); the record starts after it, its length rounded up to 4 bytes
* 1..28: data of ``type_len * 4`` bytes right after the header
* 29 RINGBUF_TYPE_PADDING: a discarded event; ``array[0]`` is the number of
  bytes after the header.  With ``time_delta == 0`` it is the "null" padding the
  kernel writes when the rest of the page is unused: the page ends there
* 30 RINGBUF_TYPE_TIME_EXTEND: ``time_delta + (array[0] << 27)`` is added to the
  running time
* 31 RINGBUF_TYPE_TIME_STAMP: ``time_delta + (array[0] << 27)`` *is* the time;
  it lacks the top 5 bits, which come from the running time (``TS_MSB``)

Timestamps follow libtraceevent's kbuffer (trace-cmd's decoder, our oracle):
each header's ``time_delta`` is added to the running time, padding included.

:func:`walk_pages` runs one compiled loop (:mod:`tracewatch.kernels.walk`) over
a run of pages of one CPU and returns a :class:`PageIndex`; :func:`walk_buffers`
walks every CPU's pages into one set of per-event arrays, so a merge across CPUs
needs no copy.
The walk never reads past a page's commit or the buffer; a damaged page ends
at the damage and the walk goes on with the next page, listing what it found
in ``PageIndex.damage`` so the caller can raise
:class:`~tracewatch.errors.TraceFormatError` or skip with keep-going.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..kernels.walk import (
    COMMIT_MASK,
    DAMAGE_BAD_LENGTH,
    DAMAGE_COMMIT_TOO_BIG,
    DAMAGE_PAST_COMMIT,
    RB_MISSED_EVENTS,
    RB_MISSED_STORED,
    RINGBUF_TYPE_DATA_TYPE_LEN_MAX,
    RINGBUF_TYPE_PADDING,
    RINGBUF_TYPE_TIME_EXTEND,
    RINGBUF_TYPE_TIME_STAMP,
    TS_MSB,
    TS_SHIFT,
    walk_kernel,
)

__all__ = [
    "PageIndex",
    "PageDamage",
    "walk_pages",
    "walk_buffers",
    "RB_MISSED_EVENTS",
    "RB_MISSED_STORED",
    "COMMIT_MASK",
    "TS_MSB",
    "RINGBUF_TYPE_DATA_TYPE_LEN_MAX",
    "RINGBUF_TYPE_PADDING",
    "RINGBUF_TYPE_TIME_EXTEND",
    "RINGBUF_TYPE_TIME_STAMP",
    "TS_SHIFT",
]


class _Recycler:
    """Big ``np.empty`` arrays whose memory is handed out again once nothing refers to it.

    Decoding a file allocates tens of MB of per-event arrays; fresh memory costs a
    page fault (and the kernel zeroing the page) per 4 KiB touched, about as much
    as the decoding itself.  A block is reused only when no array refers to it
    any more (every view keeps its owner, the block, referenced), so a reused
    block can never change data still in use.  Free blocks kept are bounded by
    ``keep`` bytes; smaller requests go to ``np.empty``.  A block is reused for a
    request at most a quarter (plus 256 KiB) smaller, so an array kept for long
    pins little more memory than ``np.empty`` would.
    """

    MIN_BYTES = 1 << 18

    def __init__(self, keep: int = 192 << 20) -> None:
        self.keep = keep
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, n: int, dtype: np.dtype | type) -> np.ndarray:
        """Like ``np.empty(n, dtype)`` (1-D, contents undefined)."""
        dt = np.dtype(dtype)
        nbytes = int(n) * dt.itemsize
        if nbytes < self.MIN_BYTES:
            return np.empty(n, dt)
        with self._lock:
            return self._take(nbytes)[:nbytes].view(dt)

    def _take(self, nbytes: int) -> np.ndarray:
        best = -1
        blocks = self._blocks
        for i in range(len(blocks)):
            size = len(blocks[i])
            # free: referenced by the list and getrefcount's argument only
            if nbytes <= size <= nbytes + nbytes // 4 + self.MIN_BYTES and sys.getrefcount(blocks[i]) == 2:
                if best < 0 or size < len(blocks[best]):
                    best = i
        if best >= 0:
            block = blocks.pop(best)
        else:
            block = np.empty(-(-nbytes // self.MIN_BYTES) * self.MIN_BYTES, np.uint8)
            # make room: forget free blocks (oldest first) beyond what may be kept
            total = len(block) + sum(len(b) for b in blocks)
            i = 0
            while total > self.keep and i < len(blocks):
                if sys.getrefcount(blocks[i]) == 2:
                    total -= len(blocks[i])
                    del blocks[i]
                else:
                    i += 1
        blocks.append(block)  # most recently used last
        return block

    def clear(self) -> None:
        """Forget every block (memory goes back once the arrays using it are gone)."""
        with self._lock:
            self._blocks.clear()


#: where tracewatch's big per-event arrays come from (see :class:`_Recycler`)
recycler = _Recycler()


@dataclass(frozen=True)
class PageDamage:
    """A page whose walk stopped early: where and why.

    ``page`` counts pages from the start of the walked buffer, ``offset`` is the
    byte offset inside that page of the event header (or page field) at fault.
    """

    page: int
    offset: int
    message: str


@dataclass(eq=False)
class PageIndex:
    """Where the events of a run of pages are, one array entry per data event.

    Per event (same length, stream order):

    * ``ts``: absolute timestamp in the trace clock (ns for the usual clocks), uint64
    * ``offset``: byte offset in the walked buffer of the record (which starts
      with ``common_type``), int64
    * ``length``: record length in bytes (rounded up to 4, as the kernel stores it), int32
    * ``type_id``: ``common_type`` of the record, uint16 (0 if the record is too short)

    Per page (``len(buf) // page_size`` entries):

    * ``page_ts``: the page header timestamp, uint64
    * ``page_commit``: bytes of event data (flags stripped), int64
    * ``page_missed``: events lost just before this page, as trace-cmd's
      ``record->missed_events``: 0 none, -1 some but the count was not stored,
      N > 0 the stored count, int64
    * ``page_first``: index of the page's first event in the per-event arrays
      (``len(ts)`` past the end for a page without events), int64

    ``damage`` lists pages whose walk stopped early; ``trailing_bytes`` counts
    bytes after the last whole page, which were not walked.
    """

    ts: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    type_id: np.ndarray
    page_ts: np.ndarray
    page_commit: np.ndarray
    page_missed: np.ndarray
    page_first: np.ndarray
    page_size: int
    damage: list[PageDamage] = field(default_factory=list)
    trailing_bytes: int = 0

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def page(self) -> np.ndarray:
        """Page number of each event (int64)."""
        return self.offset // self.page_size

    @property
    def missed_before(self) -> np.ndarray:
        """Per event: events lost just before it (0, -1 unknown count, or N), int64.

        Only the first event of a page can follow lost events (kbuffer's
        ``kbuffer_missed_events``).
        """
        out = np.zeros(len(self.ts), dtype=np.int64)
        at, count = self.missed_at()
        out[at] = count
        return out

    def missed_at(self) -> tuple[np.ndarray, np.ndarray]:
        """The events that follow lost events (ascending indexes, int64) and what was lost
        before each (-1 unknown count, or N): the non-zero entries of :attr:`missed_before`."""
        has = (self.page_missed != 0) & (self.page_first < len(self.ts))
        if len(self.page_first):
            # a page's first index equals the next page's when it has no events
            nxt = np.append(self.page_first[1:], len(self.ts))
            has &= self.page_first < nxt
        return self.page_first[has], self.page_missed[has]

    @classmethod
    def empty(cls, page_size: int) -> "PageIndex":
        return cls(
            ts=np.zeros(0, np.uint64), offset=np.zeros(0, np.int64), length=np.zeros(0, np.int32),
            type_id=np.zeros(0, np.uint16), page_ts=np.zeros(0, np.uint64),
            page_commit=np.zeros(0, np.int64), page_missed=np.zeros(0, np.int64),
            page_first=np.zeros(0, np.int64), page_size=page_size,
        )


def _as_native_words(buf: np.ndarray, little: bool) -> np.ndarray:
    """``buf`` (whole pages) as native-endian u32 words, without a copy when possible."""
    native_little = sys.byteorder == "little"
    if little == native_little and buf.ctypes.data % 4 == 0:
        return buf.view(np.uint32)
    return np.frombuffer(buf.tobytes(), dtype="<u4" if little else ">u4").astype(np.uint32)


def _damage_message(code: int, offset: int, aux: int, data_start: int, page_size: int) -> str:
    if code == DAMAGE_COMMIT_TOO_BIG:
        return (f"page commit {aux:#x} is larger than the page's data area "
                f"{page_size - data_start:#x}")
    if code == DAMAGE_PAST_COMMIT:
        return f"event at page offset {offset:#x} runs past commit (data ends at page offset {aux:#x})"
    if code == DAMAGE_BAD_LENGTH:
        return f"event at page offset {offset:#x} has a bad length word {aux}"
    return f"damage code {code} at page offset {offset:#x}"


def _as_page_bytes(buf: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """``buf`` as a contiguous 1-D uint8 array (a view when it already is one)."""
    arr = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    if arr.dtype != np.uint8 or arr.ndim != 1:
        arr = arr.reshape(-1).view(np.uint8)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def walk_pages(buf: np.ndarray | bytes | bytearray | memoryview, page_size: int, *,
               commit_size: int = 8, little: bool = True) -> PageIndex:
    """Find every data event in a run of ring-buffer pages of one CPU.

    ``buf`` holds whole pages of ``page_size`` bytes (the sub-buffer size,
    4096 unless the kernel was told otherwise); bytes after the last whole page
    are counted in ``trailing_bytes`` and not walked.  ``commit_size`` is the
    size of the header_page ``commit`` field (8 on 64-bit kernels, 4 on
    32-bit), ``little`` the kernel's byte order.
    """
    return walk_buffers([buf], page_size, commit_size=commit_size, little=little)[0][0]


def walk_buffers(bufs: Sequence[np.ndarray | bytes | bytearray | memoryview], page_size: int, *,
                 commit_size: int = 8, little: bool = True, recycle: bool = False, capacity: int = 0
                 ) -> tuple[list[PageIndex], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`walk_pages` for several runs of pages (one per CPU) at once.

    Returns the :class:`PageIndex` of each buffer and the per-event arrays of
    all of them end to end, ``(ts, offset, length, type_id)``: buffer ``i``'s
    events are one slice of these (its PageIndex arrays are views of it), so
    a merge across CPUs reads them without concatenating.  ``recycle`` takes the
    per-event arrays from :data:`recycler` (for a whole file's walk, whose arrays
    are dropped together; a live reader's small walks keep ``np.empty``, whose
    unused capacity costs no memory).  ``capacity``: the events expected, when known
    (the output is sized for them at once instead of from a first run of pages).
    """
    if commit_size not in (4, 8):
        raise ValueError(f"commit_size must be 4 or 8, not {commit_size}")
    if page_size < 16 or page_size % 4:
        raise ValueError(f"page_size must be a multiple of 4 and at least 16, not {page_size}")
    arrs = [_as_page_bytes(b) for b in bufs]
    pages_of = [len(a) // page_size for a in arrs]
    data_start = 8 + commit_size
    page_words = page_size // 4
    long8 = commit_size == 8
    per_page = page_size // 8  # most events a page can hold

    # Output is written in place: sized from the event density of a first run of
    # pages, grown if the rest is denser.  Untouched capacity costs no memory (the
    # pages are never faulted in), so the arrays are returned as slices.
    left = sum(pages_of)
    cap = capacity + 1 if capacity > 0 else min(left, 64) * per_page
    new = recycler.empty if recycle else np.empty
    outs = [new(cap, t) for t in (np.uint64, np.int64, np.int32, np.uint16)]
    n = 0
    walked = 0
    runs = []
    for arr, n_pages in zip(arrs, pages_of):
        first = n
        per_page_arrays = [np.zeros(n_pages, t) for t in (np.uint64, np.int64, np.int64, np.int64, np.int32,
                                                           np.int64, np.int64)]
        if n_pages:
            words = _as_native_words(arr[: n_pages * page_size], little)
            p = 0
            while True:
                n, p1 = walk_kernel(words, page_words, p, n_pages, data_start, long8, not little, *outs, n,
                                     *per_page_arrays)
                walked += p1 - p
                left -= p1 - p
                p = p1
                if p >= n_pages:
                    break
                # out of room: grow for the pages left (of this and the following buffers)
                density = max(n / max(walked, 1), 1.0)
                want = n + int(density * 1.25 * left) + per_page
                grown = [new(max(want, cap + per_page), a.dtype) for a in outs]
                for bigger, old in zip(grown, outs):
                    bigger[:n] = old[:n]
                outs = grown
                cap = len(outs[0])
        runs.append((first, n, n_pages, len(arr) - n_pages * page_size, per_page_arrays))
    every = tuple(a[:n] for a in outs)
    ts, off, ln, ty = every

    out = []
    for first, end, n_pages, trailing, (page_ts, page_commit, page_missed, page_first, dmg_code, dmg_off,
                                         dmg_aux) in runs:
        page_first -= first
        damage = [
            PageDamage(int(p), int(dmg_off[p]),
                       _damage_message(int(dmg_code[p]), int(dmg_off[p]), int(dmg_aux[p]), data_start, page_size))
            for p in np.flatnonzero(dmg_code)
        ]
        out.append(PageIndex(ts=ts[first:end], offset=off[first:end], length=ln[first:end], type_id=ty[first:end],
                             page_ts=page_ts, page_commit=page_commit, page_missed=page_missed,
                             page_first=page_first, page_size=page_size, damage=damage, trailing_bytes=trailing))
    return out, every
