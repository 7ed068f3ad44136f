"""The fused file path: TraceDatReader.type_index / FileSource.split against index() + split_by_type,
lazy formats, and the recycled allocations."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES
from tracewatch.errors import TraceFormatError
from tracewatch.formats.context import TraceContext
from tracewatch.formats.ring_page import _Recycler
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.kernels.merge import merge_events, merge_runs_kernel
from tracewatch.sources.file import FileSource
from tracewatch.stream.batch import split_by_type

NAMES = ["a_syscalls.v6.dat", "b_sched.v6.dat", "c_markers.v6.dat", "e_mixed.v6.dat", "e_mixed.v7z.dat"]
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures not present")


def _index_or_partial(r: TraceDatReader, **kw):
    try:
        return r.index(**kw), None
    except TraceFormatError as e:
        return e.partial, e  # type: ignore[attr-defined]


def _type_index_or_partial(r: TraceDatReader, **kw):
    try:
        return r.type_index(**kw), None
    except TraceFormatError as e:
        return e.partial, e  # type: ignore[attr-defined]


def _same_grouping(merged, tindex, wanted) -> None:
    assert tindex.total == len(merged)
    assert tindex.type_id.tolist() == sorted(t for t in set(merged.type_id.tolist()) if t in wanted)
    for k, t in enumerate(tindex.type_id.tolist()):
        sel = np.flatnonzero(merged.type_id == t)
        rows = slice(int(tindex.bounds[k]), int(tindex.bounds[k + 1]))
        assert tindex.pos[rows].tolist() == sel.tolist()
        assert tindex.cpu[rows].tolist() == merged.cpu[sel].tolist()
        assert tindex.ts[rows].tolist() == merged.ts[sel].astype(np.int64).tolist()
        assert tindex.offset[rows].tolist() == merged.offset[sel].tolist()
        assert tindex.length[rows].tolist() == merged.length[sel].tolist()


def _check_file(path: Path) -> None:
    for kg in (False, True):
        try:
            r1, r2 = TraceDatReader(path), TraceDatReader(path)
        except TraceFormatError:
            return
        merged, e1 = _index_or_partial(r1, keep_going=kg)
        tindex, e2 = _type_index_or_partial(r2, keep_going=kg)
        assert (e1 is None) == (e2 is None)
        if e1 is not None:
            assert str(e1) == str(e2)
        if merged is None:
            assert tindex is None
            continue
        _same_grouping(merged, tindex, r1.formats)
        assert [str(e) for e in merged.damage] == [str(e) for e in tindex.damage]


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_type_index_groups_the_merged_index(name: str) -> None:
    _check_file(FIXTURES / name)
    r = TraceDatReader(FIXTURES / name)
    some = sorted(r.formats)[::3]
    _same_grouping(r.index(), r.type_index(types=some), set(some))


@needs_fixtures
@pytest.mark.parametrize("seed", range(8))
def test_type_index_on_damaged_files(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    name = NAMES[seed % 4]
    data = bytearray((FIXTURES / name).read_bytes())
    spans = [(d.file_offset, d.file_size) for d in TraceDatReader(FIXTURES / name).buffer.cpus if d.file_size]
    off, size = rng.choice(spans)
    for _ in range(rng.randint(1, 6)):
        data[off + rng.randrange(size)] = rng.randrange(256)
    if seed % 3 == 0:
        data = data[: off + rng.randrange(size)]
    p = tmp_path / "d.dat"
    p.write_bytes(bytes(data))
    _check_file(p)


@needs_fixtures
@pytest.mark.parametrize("name", ["a_syscalls.v6.dat", "e_mixed.v6.dat"])
def test_file_split_and_batches_match_chunk_batches(name: str) -> None:
    path = FIXTURES / name
    src = FileSource(str(path), chunk_events=5000)
    # reference: the merged index split per chunk, as dispatch does
    want = []
    for chunk in src.chunks():
        for b, _pos in chunk.batches():
            want.append((b.format_.id, b.common_ts.tolist(), b.common_cpu.tolist(),
                         {f.name: b.column_(f.name).tolist() for f in b.format_.fields
                          if not f.is_array and f.size in (1, 2, 4, 8)}))
    got = []
    for b in FileSource(str(path), chunk_events=5000).batches():
        got.append((b.format_.id, b.common_ts.tolist(), b.common_cpu.tolist(),
                    {f.name: b.column_(f.name).tolist() for f in b.format_.fields
                     if not f.is_array and f.size in (1, 2, 4, 8)}))
    assert got == want
    # whole file: positions are those of the merged order
    r = TraceDatReader(path)
    idx = r.index()
    ctx = TraceContext(r.formats, r.symbols)
    bufs = [r.cpu_buffer(c)[0] for c in range(r.cpus)]
    ref = {b.format_.id: (pos.tolist(), b.common_type.tolist(), b.common_pid.tolist())
           for b, pos in split_by_type(ctx, bufs, idx.cpu, idx.ts, idx.offset, idx.length, idx.type_id)}
    mine = {b.format_.id: (pos.tolist(), b.common_type.tolist(), b.common_pid.tolist())
            for b, pos in FileSource(str(path)).split()}
    assert mine == ref
    sched = [b.format_.system for b, _ in FileSource(str(path)).split("sched:*")]
    assert set(sched) <= {"sched"}


@needs_fixtures
def test_split_of_a_damaged_file_delivers_then_raises(tmp_path: Path) -> None:
    r = TraceDatReader(FIXTURES / "a_syscalls.v6.dat")
    cut = r.buffer.cpus[1].file_offset + 10 * 4096 + 100
    p = tmp_path / "t.dat"
    p.write_bytes((FIXTURES / "a_syscalls.v6.dat").read_bytes()[:cut])
    partial = TraceDatReader(p)
    with pytest.raises(TraceFormatError):
        partial.index()
    n = 0
    with pytest.raises(TraceFormatError):
        for b, _pos in FileSource(str(p)).split():
            n += len(b)
    assert n > 0
    kg = FileSource(str(p), keep_going=True)
    assert sum(len(b) for b, _ in kg.split()) > n and len(kg.damage) == 1


@pytest.mark.parametrize("seed", range(25))
def test_merge_runs_give_merge_kernel_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ncpu = int(rng.integers(1, 6))
    sizes = rng.integers(0, 40, ncpu)
    parts = []
    for s in sizes:
        t = np.sort(rng.integers(0, 30, int(s))) if seed % 3 else rng.integers(0, 30, int(s))  # some go backwards
        parts.append(t.astype(np.uint64))
    ts = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    ends = starts + sizes.astype(np.int64)
    n = len(ts)
    off = np.arange(n, dtype=np.int64)
    out = [np.empty(n, np.int32), np.empty(n, np.uint64), np.empty(n, np.int64), np.empty(n, np.int32),
           np.empty(n, np.uint16), np.zeros(n, np.int64)]
    merge_events(ts, off, np.zeros(n, np.int32), np.zeros(n, np.uint16), starts, ends, np.zeros(0, np.int64),
                 np.zeros(0, np.int64), *out)
    rc, rs, re = (np.empty(n + ncpu, np.int64) for _ in range(3))
    nr = merge_runs_kernel(ts, starts, ends, rc, rs, re)
    order = np.concatenate([np.arange(rs[i], re[i]) for i in range(nr)]) if nr else np.zeros(0, np.int64)
    cpus = np.concatenate([np.full(re[i] - rs[i], rc[i]) for i in range(nr)]) if nr else np.zeros(0, np.int64)
    assert order.tolist() == out[2].tolist() and cpus.tolist() == out[0].tolist()


@needs_fixtures
def test_formats_are_parsed_when_looked_up() -> None:
    r = TraceDatReader(FIXTURES / "e_mixed.v6.dat")
    fmts = r.formats
    entries = fmts._entries  # type: ignore[attr-defined]
    assert all(isinstance(v, tuple) for v in entries.values())
    some = next(iter(fmts))
    assert fmts.get(some).id == some and some in fmts and fmts.get(-5) is None
    assert sum(not isinstance(v, tuple) for v in entries.values()) == 1
    every = dict(fmts.items())
    assert len(every) == len(fmts) and all(f.id == i for i, f in every.items())
    # each reader gets its own EventFormat objects
    assert TraceDatReader(FIXTURES / "e_mixed.v6.dat").formats[some] is not fmts[some]


def test_bad_format_raises_when_looked_up(tmp_path: Path) -> None:
    from tracewatch.formats.tracedat import _LazyFormats

    def parse(text: str, system: str, at: int):
        raise TraceFormatError(f"{system} event format: bad", path="x", offset=at)

    fmts = _LazyFormats({7: ("ID: 7", "s", 100)}, parse)
    assert 7 in fmts and len(fmts) == 1
    with pytest.raises(TraceFormatError) as e:
        fmts.get(7)
    assert e.value.offset == 100


def test_recycler_reuses_only_free_blocks() -> None:
    rec = _Recycler(keep=64 << 20)
    a = rec.empty(1 << 20, np.int64)
    a[:] = 7
    b = rec.empty(1 << 20, np.int64)  # a is alive: a new block
    assert not np.shares_memory(a, b)
    view = a[10:20]
    del a
    c = rec.empty(1 << 20, np.int64)  # a's block is still referenced through the view
    assert not np.shares_memory(view, c) and view.tolist() == [7] * 10
    del view
    d = rec.empty(1 << 20, np.int64)  # now it is free
    assert len(rec._blocks) == 3 and d.shape == (1 << 20,) and d.dtype == np.int64
    small = rec.empty(10, np.uint8)
    assert small.base is None
    rec.clear()
    assert not rec._blocks


@needs_fixtures
@pytest.mark.parametrize("name", ["b_sched.v6.dat", "e_mixed.v7z.dat"])
def test_split_columns_equal_the_record_bytes(name: str) -> None:
    from tracewatch.formats.records import gather_rows

    for b, _pos in FileSource(str(FIXTURES / name)).split():
        width = max((f.offset + f.size for f in b.format_.fields if not f.is_array), default=0)
        rows = gather_rows(b._buffers, b._cpu, b._offset, b._length, width)
        for f in b.format_.fields:
            if f.is_array or f.size not in (1, 2, 4, 8) or b.format_.field(f.name) is not f:
                continue
            col = b.column_(f.name)
            want = np.ascontiguousarray(rows[:, f.offset : f.offset + f.size]).view(col.dtype).reshape(-1)
            assert col.tolist() == want.tolist(), f.name
