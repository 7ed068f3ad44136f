"""Record bytes -> numpy columns: the fixed-size fields of many records at once.

A record is ``buffers[cpu[i]][offset[i] : offset[i] + length[i]]`` (a walk's or a
merge's arrays say where); bytes past its end or its buffer's end read as 0, so
damaged input never shows another record's bytes.  The loops are compiled
(:mod:`tracewatch.kernels.gather`); this module plans them and allocates their
output (from :data:`~tracewatch.formats.ring_page.recycler`).  Batches
(``stream.batch``) and the report's lines (``formats.report_text``) read records
through it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..kernels.gather import gather_kernel, scalars_kernel
from .ring_page import recycler

__all__ = ["gather_rows", "gather_scalars"]


def gather_rows(buffers: Sequence[np.ndarray], cpu: np.ndarray, offset: np.ndarray,
                length: np.ndarray, width: int) -> np.ndarray:
    """Copy the first ``width`` bytes of every record into an (N, width) matrix.

    Records shorter than ``width`` (damaged input) are zero-padded, so a column
    read never sees another record's bytes.
    """
    n = len(offset)
    words = (max(width, 0) + 3) // 4
    if n == 0 or words == 0:
        return np.zeros((n, max(width, 0)), np.uint8)
    at = np.arange(words, dtype=np.int64)
    out = _gather_words(buffers, cpu, offset, length, at, at, np.full(words, words, np.int64), n * words)
    return out.view(np.uint8).reshape(n, 4 * words)[:, :width]


def gather_scalars(buffers: Sequence[np.ndarray], cpu: np.ndarray, offset: np.ndarray, length: np.ndarray,
                   fields: Sequence[tuple[int, np.dtype]]) -> list[np.ndarray]:
    """Columns of fixed-size scalar fields, each ``(byte offset in the record, dtype)``.

    Record ``i`` is ``buffers[cpu[i]][offset[i] : offset[i] + length[i]]``;
    bytes past its end or its buffer's end read as 0.  Buffers that are slices
    of one array (a trace.dat's mapping): one compiled pass over the records
    (see :func:`~tracewatch.kernels.gather.scalars_kernel`), the columns views of one allocation, each in
    the trace's byte order as the dtype says.  Separate buffers (live pages):
    one pass per CPU copying the words the fields live in (:func:`_plan_scalars`).
    """
    n = len(offset)
    if n == 0:
        return [np.zeros(0, dt) for _, dt in fields]
    root = _common_root(buffers)
    if root is None:
        # buffers in separate allocations (live pages): one pass per CPU present copying the
        # 32-bit words the fields live in (see _plan_scalars)
        moves, total, where = _plan_scalars(fields, n)
        words = _gather_words(buffers, cpu, offset, length, moves[:, 0].copy(), moves[:, 1].copy(),
                              moves[:, 2].copy(), total)
        return _scalar_views(words, 0, fields, where, n)
    sizes = [np.dtype(dt).itemsize for _, dt in fields]
    # widest first: every column starts aligned to its item size
    base = [0] * len(fields)
    at = 0
    for i in sorted(range(len(fields)), key=lambda i: -sizes[i]):
        base[i] = at
        at += n * sizes[i]
    out = recycler.empty((at + 7) // 8, np.uint64)
    f_off = np.array([off for off, _ in fields], np.int64)
    f_size = np.array(sizes, np.int64)
    f_base = np.array(base, np.int64)
    w0 = int(f_off.min()) // 4
    need = (int((f_off + f_size).max()) + 3) // 4 - w0  # words of a record the fields span
    # rows of an even width up to 8 are copied without a loop (the extra word is never read)
    width = need + (need & 1) if need < 8 else need
    out8 = out.view(np.uint8)
    src, start, stop = root
    scalars_kernel(src, _words_of(src), start, stop, np.ascontiguousarray(cpu, dtype=np.int32),
                   np.ascontiguousarray(offset, dtype=np.int64), np.ascontiguousarray(length, dtype=np.int32),
                   w0, need, width, f_off, f_size, f_base, out8, out.view(np.uint16), out.view(np.uint32))
    return [out8[b : b + n * sz].view(np.dtype(dt)) for (_, dt), b, sz in zip(fields, base, sizes)]


def _plan_scalars(fields: Sequence[tuple[int, np.dtype]], n: int
                  ) -> tuple[np.ndarray, int, list[tuple[int, int, int]]]:
    """Where the words of ``n`` records' scalar fields go: a word-aligned 4- or 8-byte field
    into its own block (then the column as it is), the words holding smaller or unaligned
    fields into blocks shared by them (the columns are copied out of those).

    Returns the moves (rows of word in the record, first destination word, stride in
    words), the words in all (even, so blocks placed after it stay 8-byte aligned) and per
    field (block's first word, words per row, record word of the block's first word).
    """
    moves: list[tuple[int, int, int]] = []
    total = 0
    where: list[tuple[int, int, int]] = [(0, 0, 0)] * len(fields)
    shared: dict[tuple[int, int], int] = {}
    # 8-byte blocks first, so each starts 8-byte aligned
    for i in sorted(range(len(fields)), key=lambda i: -fields[i][1].itemsize):
        off, dt = fields[i]
        size = dt.itemsize
        w0, w1 = off // 4, (off + size - 1) // 4
        span = w1 - w0 + 1
        own = size in (4, 8) and off % 4 == 0
        if own or (w0, w1) not in shared:
            base = total
            total += n * span
            moves.extend((w0 + j, base + j, span) for j in range(span))
            if not own:
                shared[(w0, w1)] = base
        else:
            base = shared[(w0, w1)]
        where[i] = (base, span, w0)
    return np.array(moves, np.int64).reshape(-1, 3), total + (total & 1), where


def _scalar_views(out: np.ndarray, at: int, fields: Sequence[tuple[int, np.dtype]],
                  where: list[tuple[int, int, int]], n: int) -> list[np.ndarray]:
    """The columns of a :func:`_plan_scalars` plan placed at word ``at`` of ``out``."""
    cols = []
    for (off, dt), (base, span, w0) in zip(fields, where):
        base += at
        if dt.itemsize in (4, 8) and off % 4 == 0:
            cols.append(out[base : base + n * span].view(dt))
        else:
            cols.append(np.ndarray((n,), dt, out, 4 * base + off - 4 * w0, (4 * span,)).copy())
    return cols


def _gather_words(buffers: Sequence[np.ndarray], cpu: np.ndarray, offset: np.ndarray, length: np.ndarray,
                  m_word: np.ndarray, m_dest: np.ndarray, m_stride: np.ndarray, total: int) -> np.ndarray:
    """Run :func:`~tracewatch.kernels.gather.gather_kernel` over the records of every CPU; returns its output words."""
    out = recycler.empty(total, np.uint32)  # every word a move names is written
    cpu = np.ascontiguousarray(cpu, dtype=np.int32)
    offset = np.ascontiguousarray(offset, dtype=np.int64)
    length = np.ascontiguousarray(length, dtype=np.int32)
    root = _common_root(buffers)
    if root is not None:
        src, start, stop = root
        gather_kernel(src, _words_of(src), start, stop, cpu, -1, True, offset, length, m_word, m_dest, m_stride,
                      out.view(np.uint8), out)
        return out
    # buffers in separate allocations: one pass per CPU present
    start = np.zeros(len(buffers), np.int64)
    stop = np.array([len(b) for b in buffers], np.int64)
    present = np.flatnonzero(np.bincount(cpu[(cpu >= 0) & (cpu < len(buffers))], minlength=len(buffers))).tolist()
    if not present:
        out[:] = 0
        return out
    for j, c in enumerate(present):
        src = np.asarray(buffers[c])
        if src.dtype != np.uint8 or src.ndim != 1 or not src.flags.c_contiguous:
            src = np.ascontiguousarray(src).reshape(-1).view(np.uint8)
        # the first pass also zeroes the rows of no CPU
        gather_kernel(src, _words_of(src), start, stop, cpu, c, j == 0, offset, length, m_word, m_dest, m_stride,
                      out.view(np.uint8), out)
    return out


def _words_of(src: np.ndarray) -> np.ndarray:
    """``src`` as native u32 words when it starts 4-byte aligned (empty otherwise: bytes are copied singly)."""
    if src.__array_interface__["data"][0] % 4:
        return np.zeros(0, np.uint32)
    return src[: len(src) // 4 * 4].view(np.uint32)


def _common_root(buffers: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """When every buffer is a slice of one byte array (a trace.dat's mapping): that array and
    where each buffer starts and stops in it; else None."""
    root = None
    for b in buffers:
        if len(b) == 0:
            continue
        base = getattr(b, "base", None)
        if not isinstance(base, np.ndarray) or (root is not None and base is not root):
            return None
        if b.dtype != np.uint8 or b.ndim != 1 or not b.flags.c_contiguous:
            return None
        root = base
    if root is None or root.dtype != np.uint8 or root.ndim != 1 or not root.flags.c_contiguous:
        return None
    at = root.__array_interface__["data"][0]
    start = np.zeros(len(buffers), np.int64)
    stop = np.zeros(len(buffers), np.int64)
    for c, b in enumerate(buffers):
        if len(b):
            start[c] = b.__array_interface__["data"][0] - at
            stop[c] = start[c] + len(b)
            if start[c] < 0 or stop[c] > len(root):
                return None
    return root, start, stop
