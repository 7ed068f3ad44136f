"""Compiled gathers: bytes of records (in one byte array, or one per CPU) -> columns.

Record ``i`` is ``src[start[c] + offset[i] :]`` (``c = cpu[i]``), cut at ``length[i]``
bytes and at ``stop[c]``; nothing outside it is read and bytes past its end read as 0.
``formats.records`` plans the moves and allocates the outputs.
"""

from __future__ import annotations

import numpy as np

from ..compiled import kernel

#: records per block of :func:`scalars_kernel` (their bytes stay in L1/L2 from field to field)
BLOCK = 256


@kernel
def scalars_kernel(src, src32, start, stop, cpu, offset, length, w0, need, width, f_off, f_size, f_base,
                   out8, out16, out32):
    """Scalar columns of records, a block of records at a time: where each record starts,
    then each field's values of the block, one tight loop per field.

    Field ``k`` (``f_size[k]`` bytes at record byte ``f_off[k]``) of record ``i`` goes
    to bytes ``f_base[k] + i * f_size[k]`` of ``out8`` (``out16``/``out32``: its views;
    each column aligned to its item size).  Record ``i`` is ``src[start[c] + offset[i] :]``
    (``c = cpu[i]``), cut at ``length[i]`` bytes and at ``stop[c]``.  A record that
    starts 4-byte aligned and holds words ``w0 : w0 + need`` (every field) is read from
    ``src32``, ``src`` as words (empty when ``src`` is not aligned), with fields at their
    natural alignment; any other goes through :func:`span_rows` (bytes past the record
    are 0).  Indexes are unsigned so the loops need no negative-index handling.  Plain
    Python when NUMBA_DISABLE_JIT=1.
    """
    n = len(offset)
    n_cpu = len(start)
    nf = len(f_off)
    words_ok = len(src32) > 0
    for k in range(nf):
        sz = f_size[k]
        if (sz == 8 and f_off[k] % 4 != 0) or (sz == 4 and f_off[k] % 4 != 0) or \
                (sz == 2 and f_off[k] % 2 != 0) or (sz != 1 and sz != 2 and sz != 4 and sz != 8):
            words_ok = False
    src16 = src32.view(np.uint16)
    span = 4 * (w0 + need)
    addr = np.zeros(BLOCK, np.uint64)
    slow = np.empty(BLOCK, np.int64)
    scratch = np.empty(width, np.uint32)
    u1 = np.uint64(1)
    u2 = np.uint64(2)
    for lo in range(0, n, BLOCK):
        m = min(BLOCK, n - lo)
        n_slow = 0
        for j in range(m):
            i = lo + j
            c = cpu[i]
            ok = False
            if words_ok and c >= 0 and c < n_cpu and offset[i] >= 0:
                a = start[c] + offset[i]
                ok = (a & 3) == 0 and a + span <= min(a + length[i], stop[c])
            if ok:
                addr[j] = np.uint64(a)
            else:
                addr[j] = 0  # (a valid place to read; the row is redone below)
                slow[n_slow] = j
                n_slow += 1
        ulo = np.uint64(lo)
        for k in range(nf):
            sz = f_size[k]
            o = np.uint64(f_off[k])
            if sz == 8:
                d = (np.uint64(f_base[k]) >> u2) + u2 * ulo
                q = o >> u2
                for j in range(np.uint64(m)):
                    w = (addr[j] >> u2) + q
                    out32[d + u2 * j] = src32[w]
                    out32[d + u2 * j + u1] = src32[w + u1]
            elif sz == 4:
                d = (np.uint64(f_base[k]) >> u2) + ulo
                q = o >> u2
                for j in range(np.uint64(m)):
                    out32[d + j] = src32[(addr[j] >> u2) + q]
            elif sz == 2:
                d = (np.uint64(f_base[k]) >> u1) + ulo
                q = o >> u1
                for j in range(np.uint64(m)):
                    out16[d + j] = src16[(addr[j] >> u1) + q]
            elif sz == 1:
                d = np.uint64(f_base[k]) + ulo
                for j in range(np.uint64(m)):
                    out8[d + j] = src[addr[j] + o]
        for x in range(n_slow):
            i = lo + slow[x]
            span_rows(src, src32, start, stop, cpu, -1, True, offset, length, w0, need, width, i, i + 1,
                       scratch.view(np.uint8), scratch)
            columns_of_rows(scratch, 1, width, i, w0, f_off, f_size, f_base, out8, out16, out32)


@kernel
def span_rows(src, src32, start, stop, cpu, only_cpu, fill_invalid, offset, length, w0, need, width, lo, hi,
              rows8, rows32):
    """Words ``w0 : w0 + width`` of records ``lo:hi`` to ``rows32[(i - lo) * width :]``; the
    words past ``w0 + need`` may hold anything (they are not read).

    Record ``i`` is ``src[start[c] + offset[i] :]`` (``c = cpu[i]``), cut at
    ``length[i]`` bytes and at ``stop[c]``; bytes past its end are written as 0
    (a record whose CPU has no buffer, all 0).  A record that starts 4-byte
    aligned and holds the words is read from ``src32`` (``src`` as words; empty
    when ``src`` is not aligned), any other a byte at a time.  With
    ``only_cpu >= 0`` only that CPU's records are written (and those of no CPU
    when ``fill_invalid``)."""
    n_cpu = len(start)
    words_ok = len(src32) > 0
    span = 4 * (w0 + need)
    last = len(src32) - w0 - width  # the last word a fast copy may start at
    for i in range(lo, hi):
        r = (i - lo) * width
        c = cpu[i]
        if c < 0 or c >= n_cpu or offset[i] < 0:
            if only_cpu < 0 or fill_invalid:
                for w in range(width):
                    rows32[r + w] = 0
            continue
        if only_cpu >= 0 and c != only_cpu:
            continue
        a = start[c] + offset[i]
        e = min(a + length[i], stop[c])
        if words_ok and (a & 3) == 0 and a + span <= e and (a >> 2) <= last:
            first = (a >> 2) + w0
            # straight-line copies for the usual widths (a loop of unknown length costs more than the copy)
            if width == 8:
                rows32[r] = src32[first]
                rows32[r + 1] = src32[first + 1]
                rows32[r + 2] = src32[first + 2]
                rows32[r + 3] = src32[first + 3]
                rows32[r + 4] = src32[first + 4]
                rows32[r + 5] = src32[first + 5]
                rows32[r + 6] = src32[first + 6]
                rows32[r + 7] = src32[first + 7]
            elif width == 6:
                rows32[r] = src32[first]
                rows32[r + 1] = src32[first + 1]
                rows32[r + 2] = src32[first + 2]
                rows32[r + 3] = src32[first + 3]
                rows32[r + 4] = src32[first + 4]
                rows32[r + 5] = src32[first + 5]
            elif width == 4:
                rows32[r] = src32[first]
                rows32[r + 1] = src32[first + 1]
                rows32[r + 2] = src32[first + 2]
                rows32[r + 3] = src32[first + 3]
            elif width == 2:
                rows32[r] = src32[first]
                rows32[r + 1] = src32[first + 1]
            else:
                for w in range(width):
                    rows32[r + w] = src32[first + w]
        else:
            p = a + 4 * w0
            for b in range(4 * width):
                rows8[4 * r + b] = src[p + b] if p + b < e else 0


@kernel
def columns_of_rows(rows32, m, width, row0, w0, f_off, f_size, f_base, out8, out16, out32):
    """Field ``k`` (``f_size[k]`` bytes at record byte ``f_off[k]``) of rows ``0:m`` of
    ``rows32`` (``width`` words each, from record word ``w0``) to column bytes
    ``f_base[k] + (row0 + j) * f_size[k]`` of ``out8`` (``out16``/``out32``: its views;
    each column aligned to its item size).  Bytes are copied as they are."""
    rows8 = rows32.view(np.uint8)
    rows16 = rows32.view(np.uint16)
    for k in range(len(f_off)):
        sz = f_size[k]
        ob = f_off[k] - 4 * w0  # byte of the field in a row
        if (sz == 8 or sz == 4) and ob % 4 == 0:
            q = ob >> 2
            if sz == 8:
                d = (f_base[k] >> 2) + 2 * row0
                for j in range(m):
                    out32[d + 2 * j] = rows32[j * width + q]
                    out32[d + 2 * j + 1] = rows32[j * width + q + 1]
            else:
                d = (f_base[k] >> 2) + row0
                for j in range(m):
                    out32[d + j] = rows32[j * width + q]
        elif sz == 2 and ob % 2 == 0:
            d = (f_base[k] >> 1) + row0
            q = ob >> 1
            for j in range(m):
                out16[d + j] = rows16[j * 2 * width + q]
        elif sz == 1:
            d = f_base[k] + row0
            for j in range(m):
                out8[d + j] = rows8[j * 4 * width + ob]
        else:
            d = f_base[k] + row0 * sz
            for j in range(m):
                for b in range(sz):
                    out8[d + j * sz + b] = rows8[j * 4 * width + ob + b]


@kernel
def gather_kernel(src, src32, start, stop, cpu, only_cpu, fill_invalid, offset, length, m_word, m_dest,
                  m_stride, out, out32):
    """Copy 32-bit words of records: move ``k`` copies word ``m_word[k]`` of record ``i``
    to ``out32[m_dest[k] + i * m_stride[k]]``.

    Record ``i`` is ``src[start[c] + offset[i] :]`` (``c = cpu[i]``), cut at
    ``length[i]`` bytes and at ``stop[c]``; nothing outside it is read, and
    bytes past its end are written as 0 (a record whose CPU has no buffer, all
    0).  A record that starts 4-byte aligned is read a word at a time from
    ``src32`` (``src`` as words; empty when ``src`` itself is not aligned), any
    other a byte at a time into ``out`` (``out32``'s bytes).  With
    ``only_cpu >= 0`` only that CPU's records are written (and those of no CPU
    when ``fill_invalid``).  Plain Python when NUMBA_DISABLE_JIT=1.
    """
    n_cpu = len(start)
    n_moves = len(m_word)
    words_ok = len(src32) > 0
    span = 0  # bytes of a record the moves read
    for k in range(n_moves):
        span = max(span, 4 * m_word[k] + 4)
    for i in range(len(offset)):
        c = cpu[i]
        if c < 0 or c >= n_cpu or offset[i] < 0:
            if only_cpu < 0 or fill_invalid:
                for k in range(n_moves):
                    out32[m_dest[k] + i * m_stride[k]] = 0
            continue
        if only_cpu >= 0 and c != only_cpu:
            continue
        # (written out, not a helper: a helper called with these arrays cost reference
        # counting per record)
        lo = start[c] + offset[i]
        hi = min(lo + length[i], stop[c])
        k0, k1, row = 0, n_moves, i
        if words_ok and (lo & 3) == 0 and lo + span <= hi:
            # the usual case: every word is inside the record
            first = lo >> 2
            for k in range(k0, k1):
                out32[m_dest[k] + row * m_stride[k]] = src32[first + m_word[k]]
        else:
            for k in range(k0, k1):
                p = lo + 4 * m_word[k]
                dst = 4 * (m_dest[k] + row * m_stride[k])
                for b in range(4):
                    out[dst + b] = src[p + b] if p + b < hi else 0
