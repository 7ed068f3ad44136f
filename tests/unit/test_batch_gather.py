"""Batch decoding: the compiled gather and the counting-sort split against plain numpy."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tracewatch.formats.event_format import EventFormat
from tracewatch.formats.records import gather_rows, gather_scalars
from tracewatch.stream.batch import split_by_type


def _rows_reference(buffers, cpu, offset, length, width):
    """The first ``width`` bytes of every record, zero past the record or the buffer."""
    out = np.zeros((len(offset), width), np.uint8)
    for i, (c, o, n) in enumerate(zip(cpu.tolist(), offset.tolist(), length.tolist())):
        if 0 <= c < len(buffers) and o >= 0:
            rec = bytes(buffers[c][o : min(o + n, len(buffers[c]))])[:width]
            out[i, : len(rec)] = np.frombuffer(rec, np.uint8)
    return out


def _case(seed: int):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 5))
    sizes = rng.integers(1, 300, k)
    if seed % 2:  # slices of one array (a trace.dat mapping), maybe not 4-byte aligned
        root = rng.integers(0, 256, int(sizes.sum()) + 3).astype(np.uint8)[seed % 3 :]
        at = np.concatenate([[0], np.cumsum(sizes)])
        bufs = [root[at[c] : at[c + 1]] for c in range(k)]
    else:  # separate arrays (live pages, decompressed data)
        bufs = [rng.integers(0, 256, int(s)).astype(np.uint8) for s in sizes]
    n = int(rng.integers(0, 50))
    cpu = rng.integers(0, k + (1 if seed % 5 == 0 else 0), n).astype(np.int32)  # sometimes a CPU with no buffer
    step = 4 if seed % 4 else 1
    offset = np.array([int(rng.integers(0, len(bufs[c]) if c < k else 8)) // step * step for c in cpu], np.int64)
    length = rng.integers(0, 70, n).astype(np.int32)
    return rng, bufs, cpu, offset, length


@pytest.mark.parametrize("seed", range(30))
def test_gather_rows_and_scalars_match_reference(seed: int) -> None:
    rng, bufs, cpu, offset, length = _case(seed)
    width = int(rng.integers(0, 60))
    rows = gather_rows(bufs, cpu, offset, length, width)
    assert rows.shape == (len(offset), width)
    assert (rows == _rows_reference(bufs, cpu, offset, length, width)).all()
    fields = []
    for _ in range(int(rng.integers(1, 7))):
        size = int(rng.choice([1, 2, 4, 8]))
        off = int(rng.integers(0, 40))
        off = off // size * size if rng.random() < 0.7 else off
        fields.append((off, np.dtype(("<" if rng.random() < 0.7 else ">") + str(rng.choice(["i", "u"])) + str(size))))
    ref = _rows_reference(bufs, cpu, offset, length, max(o + dt.itemsize for o, dt in fields))
    for (off, dt), col in zip(fields, gather_scalars(bufs, cpu, offset, length, fields)):
        want = np.ascontiguousarray(ref[:, off : off + dt.itemsize]).view(dt).reshape(len(offset))
        assert col.dtype == dt and col.tolist() == want.tolist()


@pytest.mark.parametrize("seed", range(20))
def test_split_by_type_groups_in_time_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 120))
    ids = rng.integers(0, 9, n).astype([np.uint16, np.int64, np.int32][seed % 3])
    ctx = SimpleNamespace(formats={i: EventFormat(i, "s", f"e{i}", []) for i in range(8) if rng.random() < 0.8})
    only = (lambda f: f.id % 3 != 0) if seed % 2 else None
    cpu = rng.integers(0, 4, n).astype(np.int32)
    ts = np.sort(rng.integers(0, 1000, n)).astype(np.uint64)
    off = rng.integers(0, 10_000, n).astype(np.int64)
    ln = rng.integers(0, 100, n).astype(np.int32)
    got = [(b.format_.id, pos.tolist(), b.common_cpu.tolist(), b.common_ts.tolist(), b._offset.tolist(),
            b._length.tolist()) for b, pos in split_by_type(ctx, [], cpu, ts, off, ln, ids, only=only)]
    want = []
    for t in sorted(set(ids.tolist())):
        fmt = ctx.formats.get(t)
        if fmt is None or (only is not None and not only(fmt)):
            continue
        pos = np.flatnonzero(ids == t)
        want.append((t, pos.tolist(), cpu[pos].tolist(), ts[pos].astype(np.int64).tolist(), off[pos].tolist(),
                     ln[pos].tolist()))
    assert got == want
