"""The compiled page walk: a run of one CPU's ring-buffer pages -> per-event arrays.

The page layout is described in :mod:`tracewatch.formats.ring_page`, which calls
:func:`walk_kernel` and turns its damage codes into messages.
"""

from __future__ import annotations

import numpy as np

from ..compiled import kernel

# Commit word flags and mask (kernel ring_buffer.c; kbuffer-parse.c uses the same).
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
COMMIT_MASK = (1 << 27) - 1

# Event header type_len values.
RINGBUF_TYPE_DATA_TYPE_LEN_MAX = 28
RINGBUF_TYPE_PADDING = 29
RINGBUF_TYPE_TIME_EXTEND = 30
RINGBUF_TYPE_TIME_STAMP = 31
TS_SHIFT = 27
# An absolute time stamp stores only the low 59 bits; the top 5 come from the running time.
TS_MSB = 0xF8 << 56

# Damage codes the walk leaves per page (0: page is fine).
DAMAGE_NONE = 0
DAMAGE_COMMIT_TOO_BIG = 1
DAMAGE_PAST_COMMIT = 2
DAMAGE_BAD_LENGTH = 3


@kernel
def walk_kernel(words, page_words, first_page, end_page, data_start, long8, big,
                out_ts, out_off, out_len, out_type, n,
                page_ts, page_commit, page_missed, page_first,
                dmg_code, dmg_off, dmg_aux):
    """The compiled page walk: pages from ``first_page`` until ``end_page`` or the output is full.

    ``words`` is the buffer as native u32 (already byte-swapped for a foreign
    endianness); ``data_start`` is the byte offset of the events in a page (16
    with an 8-byte commit, 12 with 4); ``long8`` says the commit (and stored
    lost count) are 8 bytes; ``big`` that the file is big-endian, which flips
    the header bit layout and the word order of u64 values.  Events are
    written from index ``n`` of the ``out_*`` arrays; a page is only started
    when the arrays have room for its worst case (one event per 8 bytes).
    Per-page arrays are indexed by page number.  Returns (events written in
    all, first page not walked).  Plain Python when NUMBA_DISABLE_JIT=1.

    Positions are kept in u32 words: every event header is 4-byte aligned.
    """
    ts_msb = np.uint64(TS_MSB)
    delta_mask = np.uint32(COMMIT_MASK)
    cap = len(out_ts)
    page_bytes = page_words * 4
    per_page_max = page_bytes // 8
    data_w = data_start // 4
    p = first_page
    while p < end_page:
        if n + per_page_max > cap:
            break
        base = p * page_words  # page start, in words
        lo = np.uint64(words[np.uint64(base)])
        hi = np.uint64(words[np.uint64(base + 1)])
        if big:
            ts = (lo << np.uint64(32)) | hi
        else:
            ts = (hi << np.uint64(32)) | lo
        if long8 and big:
            flags = np.int64(words[np.uint64(base + 3)])
        else:
            flags = np.int64(words[np.uint64(base + 2)])
        size = flags & np.int64(COMMIT_MASK)
        page_ts[np.uint64(p)] = ts
        page_commit[np.uint64(p)] = size
        page_first[np.uint64(p)] = n
        missed = np.int64(0)
        if flags & np.int64(RB_MISSED_EVENTS):
            missed = np.int64(-1)
            if flags & np.int64(RB_MISSED_STORED):
                at = data_start + size  # the count (a long) follows the data
                if at % 4 == 0 and at + (8 if long8 else 4) <= page_bytes:
                    w = base + at // 4
                    if not long8:
                        cnt = np.int64(words[np.uint64(w)])
                    elif big:
                        cnt = np.int64(words[np.uint64(w + 1)]) | (np.int64(words[np.uint64(w)]) << np.int64(32))
                    else:
                        cnt = np.int64(words[np.uint64(w)]) | (np.int64(words[np.uint64(w + 1)]) << np.int64(32))
                    if cnt > 0:
                        missed = cnt
        page_missed[np.uint64(p)] = missed
        p += 1
        if data_start + size > page_bytes:
            dmg_code[p - 1] = DAMAGE_COMMIT_TOO_BIG
            dmg_off[p - 1] = 8
            dmg_aux[p - 1] = size
            continue
        # data ends at byte data_start + size; a header needs its whole word inside
        end = base + data_w + size // 4
        w = base + data_w
        while w < end:
            hdr = words[np.uint64(w)]
            if big:
                type_len = hdr >> np.uint32(27)
                delta = np.uint64(hdr & delta_mask)
            else:
                type_len = hdr & np.uint32(31)
                delta = np.uint64(hdr >> np.uint32(5))
            if type_len != 0 and type_len <= RINGBUF_TYPE_DATA_TYPE_LEN_MAX:
                # the common case, 1..28: data right after the header
                length_w = np.int64(type_len)
                payload = w + 1
            elif type_len == 0:
                if w + 2 > end:
                    dmg_code[p - 1] = DAMAGE_PAST_COMMIT
                    dmg_off[p - 1] = (w - base) * 4
                    dmg_aux[p - 1] = data_start + size
                    break
                alen = np.int64(words[np.uint64(w + 1)])
                if alen < 4:
                    dmg_code[p - 1] = DAMAGE_BAD_LENGTH
                    dmg_off[p - 1] = (w - base) * 4
                    dmg_aux[p - 1] = alen
                    break
                length_w = (alen - 1) >> 2  # (alen - 4) rounded up to words
                payload = w + 2
            elif type_len == RINGBUF_TYPE_PADDING:
                if delta == 0:
                    break  # null padding: nothing more on this page
                if w + 2 > end:
                    break  # a padding header cut by the commit carries no events
                nxt = w + 1 + (np.int64(words[np.uint64(w + 1)]) + 3) // 4
                ts += delta
                if nxt > end:
                    break
                w = nxt
                continue
            else:  # RINGBUF_TYPE_TIME_EXTEND or RINGBUF_TYPE_TIME_STAMP
                if w + 2 > end:
                    dmg_code[p - 1] = DAMAGE_PAST_COMMIT
                    dmg_off[p - 1] = (w - base) * 4
                    dmg_aux[p - 1] = data_start + size
                    break
                ext = (np.uint64(words[np.uint64(w + 1)]) << np.uint64(TS_SHIFT)) + delta
                if type_len == RINGBUF_TYPE_TIME_EXTEND:
                    ts += ext
                else:
                    ts = ext | (ts & ts_msb)
                w += 2
                continue
            nxt = payload + length_w
            if nxt > end:
                dmg_code[p - 1] = DAMAGE_PAST_COMMIT
                dmg_off[p - 1] = (w - base) * 4
                dmg_aux[p - 1] = data_start + size
                break
            ts += delta
            un = np.uint64(n)
            out_ts[un] = ts
            out_off[un] = payload * 4
            out_len[un] = length_w * 4
            if length_w:
                if big:
                    out_type[un] = words[np.uint64(payload)] >> np.uint32(16)
                else:
                    out_type[un] = words[np.uint64(payload)] & np.uint32(0xFFFF)
            else:
                out_type[un] = 0
            n += 1
            w = nxt
    return n, p
