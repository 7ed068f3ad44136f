"""Compiled k-way merges of per-CPU event streams in trace-cmd's order.

trace-cmd's rule (tracecmd_peek_next_data): repeatedly the CPU whose next event
has the smallest timestamp, ties to the lower CPU, each CPU in stream order.  A
binary heap holds the CPUs by (next timestamp, CPU); the heap top emits a run of
events until its next event no longer comes before the best other CPU's, so
time-ordered streams cost O(n + runs * log CPUs).  Streams whose times go
backwards are merged by the same rule: each step still takes the smallest head.

:func:`merge_kernel` copies the merged events out; :func:`merge_runs_kernel` gives
the same order as runs without copying any event.  The two write the heap and its
runs out each (keep them in step; tests/unit/test_type_index.py checks that they
agree).  Sharing that code was measured (``bench/merge.py``, CPU time, 8 CPUs):
helpers for the heap steps, inlined by numba (``inline='always'``), made both merges
1.5-2x slower where runs are short (arrays passed to a helper inside the loop are
reference-counted on every call); one loop for both, inlined with the mode as a
constant, was 5-15% slower on short runs and on some real traces while faster on
others.  Not equal, so the loops stay written out.
"""

from __future__ import annotations

import numpy as np

from ..compiled import kernel


def merge_events(ts, off, ln, ty, starts, ends, lost_at, lost, out_cpu, out_ts, out_off, out_ln, out_ty,
                 out_missed) -> int:
    """:func:`merge_kernel` over every event of every CPU; returns how many were written."""
    ncpu = len(starts)
    k, _stop = merge_kernel(ts, off, ln, ty, starts, ends, np.zeros(ncpu, np.uint8), lost_at, lost,
                            len(out_ts), out_cpu, out_ts, out_off, out_ln, out_ty, out_missed,
                            np.empty(ncpu, np.int64))
    return int(k)


@kernel
def merge_kernel(ts, off, ln, ty, starts, ends, more, lost_at, lost, limit,
                 out_cpu, out_ts, out_off, out_ln, out_ty, out_missed, head):
    """The merged events of every CPU, copied out in trace-cmd's order.

    CPU ``c``'s events are ``starts[c]:ends[c]`` of ``ts``/``off``/``ln``/``ty``;
    ``lost_at`` (ascending) and ``lost`` give the events that follow lost events.
    Writes the merged events to the ``out_*`` arrays (``out_missed`` zeroed by the
    caller).

    Resumable, for merging a file a window of pages at a time: it stops once
    ``limit`` events are written, or when a CPU with ``more[c]`` set (events not
    walked yet) has none left in ``starts[c]:ends[c]``, since its next event is
    unknown.  ``head[c]`` is then where CPU ``c`` stands; the merge goes on from
    there (the heads are all its state).  Returns (events written, the CPU that ran
    out, or -1).  Plain Python when NUMBA_DISABLE_JIT=1.
    """
    ncpu = len(starts)
    for c in range(ncpu):
        head[c] = starts[c]
    for c in range(ncpu):
        if more[c] and starts[c] == ends[c]:
            return 0, c
    # per CPU: index in lost_at of its next event that follows lost events
    lp = np.searchsorted(lost_at, starts)
    heap = np.empty(ncpu, np.int64)
    size = 0
    for c in range(ncpu):
        if head[c] < ends[c]:
            # sift up
            i = size
            size += 1
            while i > 0:
                parent = (i - 1) // 2
                pc = heap[parent]
                if ts[head[pc]] < ts[head[c]] or (ts[head[pc]] == ts[head[c]] and pc < c):
                    break
                heap[i] = pc
                i = parent
            heap[i] = c
    k = 0
    n_lost = len(lost_at)
    while size > 0 and k < limit:
        c = heap[0]
        # the best other CPU: the smaller child of the top
        if size == 1:
            bound_ts = np.uint64(0)
            bound_c = -1
        else:
            b = heap[1]
            if size > 2:
                b2 = heap[2]
                if ts[head[b2]] < ts[head[b]] or (ts[head[b2]] == ts[head[b]] and b2 < b):
                    b = b2
            bound_ts = ts[head[b]]
            bound_c = b
        # the run: c's events before the bound (at the bound too when c is the lower CPU)
        h0 = head[c]
        e = ends[c]
        h = h0 + 1
        if bound_c < 0:
            h = e
        elif c < bound_c:
            while h < e and ts[h] <= bound_ts:
                h += 1
        else:
            while h < e and ts[h] < bound_ts:
                h += 1
        if h - h0 > limit - k:
            h = h0 + (limit - k)
        for j in range(h - h0):
            out_cpu[k + j] = c
            out_ts[k + j] = ts[h0 + j]
            out_off[k + j] = off[h0 + j]
            out_ln[k + j] = ln[h0 + j]
            out_ty[k + j] = ty[h0 + j]
        li = lp[c]
        while li < n_lost and lost_at[li] < h:
            out_missed[k + lost_at[li] - h0] = lost[li]
            li += 1
        lp[c] = li
        k += h - h0
        head[c] = h
        if h == e:
            if more[c]:
                return k, c  # its next events are not walked yet
            # drop the top: the last leaf goes to the root
            size -= 1
            c = heap[size]
            if size == 0:
                break
        # sift c down from the root
        i = 0
        while True:
            child = 2 * i + 1
            if child >= size:
                break
            ch = heap[child]
            if child + 1 < size:
                ch2 = heap[child + 1]
                if ts[head[ch2]] < ts[head[ch]] or (ts[head[ch2]] == ts[head[ch]] and ch2 < ch):
                    child += 1
                    ch = ch2
            if ts[head[c]] < ts[head[ch]] or (ts[head[c]] == ts[head[ch]] and c < ch):
                break
            heap[i] = ch
            i = child
        heap[i] = c
    return k, -1


@kernel
def merge_runs_kernel(ts, starts, ends, run_cpu, run_start, run_end):
    """The order of :func:`merge_kernel` as runs, without copying any event.

    Run ``r`` is events ``run_start[r]:run_end[r]`` of CPU ``run_cpu[r]`` (indexes
    into ``ts``); the merged order is the runs one after the other.  The run
    arrays need room for ``len(ts) + len(starts)`` runs at most (only the pages
    written are touched).  Returns the number of runs.  The same heap and tie
    rules as :func:`merge_kernel` (keep the two in step).
    """
    ncpu = len(starts)
    head = starts.copy()
    heap = np.empty(ncpu, np.int64)
    size = 0
    for c in range(ncpu):
        if head[c] < ends[c]:
            i = size
            size += 1
            while i > 0:
                parent = (i - 1) // 2
                pc = heap[parent]
                if ts[head[pc]] < ts[head[c]] or (ts[head[pc]] == ts[head[c]] and pc < c):
                    break
                heap[i] = pc
                i = parent
            heap[i] = c
    r = 0
    while size > 0:
        c = heap[0]
        if size == 1:
            bound_ts = np.uint64(0)
            bound_c = -1
        else:
            b = heap[1]
            if size > 2:
                b2 = heap[2]
                if ts[head[b2]] < ts[head[b]] or (ts[head[b2]] == ts[head[b]] and b2 < b):
                    b = b2
            bound_ts = ts[head[b]]
            bound_c = b
        h0 = head[c]
        e = ends[c]
        h = h0 + 1
        if bound_c < 0:
            h = e
        elif c < bound_c:
            while h < e and ts[h] <= bound_ts:
                h += 1
        else:
            while h < e and ts[h] < bound_ts:
                h += 1
        run_cpu[r] = c
        run_start[r] = h0
        run_end[r] = h
        r += 1
        head[c] = h
        if h == e:
            size -= 1
            c = heap[size]
            if size == 0:
                break
        i = 0
        while True:
            child = 2 * i + 1
            if child >= size:
                break
            ch = heap[child]
            if child + 1 < size:
                ch2 = heap[child + 1]
                if ts[head[ch2]] < ts[head[ch]] or (ts[head[ch2]] == ts[head[ch]] and ch2 < ch):
                    child += 1
                    ch = ch2
            if ts[head[c]] < ts[head[ch]] or (ts[head[c]] == ts[head[ch]] and c < ch):
                break
            heap[i] = ch
            i = child
        heap[i] = c
    return r
