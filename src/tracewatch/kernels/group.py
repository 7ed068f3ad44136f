"""Compiled grouping by type id: counting sorts that keep each type's rows in input order.

:func:`count_types` / :func:`group_by_type` group a chunk's time-ordered arrays
(``stream.batch.split_by_type``); :func:`count_runs` / :func:`split_runs` group a
merge given as runs (``merge.merge_runs_kernel``) without building the merged arrays
(``formats.tracedat``'s type index).
"""

from __future__ import annotations

import numpy as np

from ..compiled import kernel


@kernel
def count_types(type_id, counts):
    """How many events of each type id (ids outside ``counts`` are not counted)."""
    nbins = len(counts)
    for i in range(len(type_id)):
        t = type_id[i]
        if t >= 0 and t < nbins:
            counts[t] += 1


@kernel
def group_by_type(type_id, which, next_row, cpu, ts, offset, length, out_pos, out_cpu, out_ts, out_offset,
                  out_length):
    """A counting sort: event ``i`` of type ``t`` is kept when ``which[t] = w >= 0`` and
    goes to row ``next_row[w]`` (then the next row), so rows keep their input order
    within a type.  Plain Python when NUMBA_DISABLE_JIT=1."""
    nbins = len(which)
    for i in range(len(type_id)):
        t = type_id[i]
        if t < 0 or t >= nbins:
            continue
        w = which[t]
        if w < 0:
            continue
        d = next_row[w]
        next_row[w] = d + 1
        out_pos[d] = i
        out_cpu[d] = cpu[i]
        out_ts[d] = ts[i]
        out_offset[d] = offset[i]
        out_length[d] = length[i]


@kernel
def count_runs(ty, run_start, run_end, part, counts):
    """Events per type id over the runs into ``counts``, through four histograms (``part``,
    4 x ``len(counts)``, zeroed by the caller) so that consecutive events of one type do not
    wait on each other's update.  Plain Python when NUMBA_DISABLE_JIT=1."""
    n_bins = np.uint64(len(part) // 4)
    b2 = n_bins + n_bins
    b3 = b2 + n_bins
    u1 = np.uint64(1)
    u4 = np.uint64(4)
    for r in range(len(run_start)):
        s = np.uint64(run_start[r])
        e = np.uint64(run_end[r])
        i = s
        while i + u4 <= e:
            part[np.uint64(ty[i])] += 1
            part[n_bins + np.uint64(ty[i + u1])] += 1
            part[b2 + np.uint64(ty[i + u1 + u1])] += 1
            part[b3 + np.uint64(ty[i + u4 - u1])] += 1
            i += u4
        while i < e:
            part[np.uint64(ty[i])] += 1
            i += u1
    for t in range(len(counts)):
        counts[t] = part[t] + part[n_bins + t] + part[b2 + t] + part[b3 + t]


@kernel
def split_runs(ts, off, ln, ty, run_cpu, run_start, run_end, which, next_row,
               out_pos, out_cpu, out_ts, out_off, out_ln):
    """Group the merged order by type in one pass (a counting sort, the merged arrays never
    built): the event at merged position ``k`` of type ``t`` with ``w = which[t] >= 0`` goes
    to row ``next_row[w]`` (then the next row), so each type's rows stay in merged order.
    Plain Python when NUMBA_DISABLE_JIT=1."""
    k = 0
    for r in range(len(run_start)):
        c = np.int32(run_cpu[r])
        s = np.uint64(run_start[r])
        e = np.uint64(run_end[r])
        # unsigned indexes: no negative-index handling in the loop
        for i in range(s, e):
            w = which[np.uint64(ty[i])]
            if w >= 0:
                row = next_row[w]
                next_row[w] = row + 1
                d = np.uint64(row)
                out_pos[d] = k + np.int64(i - s)
                out_cpu[d] = c
                out_ts[d] = ts[i]
                out_off[d] = off[i]
                out_ln[d] = ln[i]
        k += np.int64(e - s)
