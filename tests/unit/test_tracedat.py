"""trace.dat reading against the shared fixtures and trace-cmd's own reports, and bad input."""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES
from tracewatch.errors import TraceFormatError
from tracewatch.formats.ring_page import walk_pages
from tracewatch.formats.tracedat import TraceDatReader, identify_input

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures not present")

# per-CPU event counts from MANIFEST.md
COUNTS = {
    "a_syscalls.v6.dat": (3272, 7932),
    "b_sched.v6.dat": (1175, 1134),
    "c_markers.v6.dat": (1029, 1029),
    "e_mixed.v6.dat": (6520, 27344),
    "e_mixed.v7z.dat": (6520, 27344),
    "raw-pages/pages.v7.dat": (1276, 1333),
}
REPORT_OF = {name: name for name in COUNTS} | {"e_mixed.v7z.dat": "e_mixed.v6.dat"}

_REPORT_LINE = re.compile(rb"^\s*.*?-(\d+)\s+\[(\d{3})\]\s+(\d+)\.(\d{6}):\s+([^:\s]+):")


@lru_cache(maxsize=None)
def reader(name: str) -> TraceDatReader:
    return TraceDatReader(FIXTURES / name)


@lru_cache(maxsize=None)
def report_rows(name: str) -> list[tuple[int, int, str]]:
    """(cpu, usecs, event name) of each event line of ``trace-cmd report -R``."""
    rows = []
    with open(FIXTURES / (REPORT_OF[name] + ".raw.txt"), "rb") as f:
        for line in f:
            m = _REPORT_LINE.match(line)
            if m:
                rows.append((int(m[2]), int(m[3]) * 1_000_000 + int(m[4]), m[5].decode()))
    return rows


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_event_counts_per_cpu(name: str) -> None:
    r = reader(name)
    assert r.cpus == 2
    idx = r.index()
    assert tuple(np.bincount(idx.cpu, minlength=2)) == COUNTS[name]
    assert idx.damage == []


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_order_and_timestamps_match_trace_cmd_report(name: str) -> None:
    """Every event in trace-cmd report's order, CPU, time (usecs, rounded as trace-cmd prints) and name."""
    r = reader(name)
    idx = r.index()
    names = {i: f.name for i, f in r.formats.items()}
    usecs = ((idx.ts + np.uint64(500)) // np.uint64(1000)).tolist()
    ours = [(c, u, names[t]) for c, u, t in zip(idx.cpu.tolist(), usecs, idx.type_id.tolist())]
    assert ours == report_rows(name)


def test_records_slow_path() -> None:
    r = reader("b_sched.v6.dat")
    recs = list(r.records())
    assert len(recs) == 2309
    first = recs[0]
    assert first.fmt is not None and first.fmt.system == "sched"
    assert int.from_bytes(first.payload[:2], "little") == first.fmt.id
    assert len(first.payload) >= first.fmt.fixed_size
    assert all(rec.missed_before == 0 for rec in recs)
    assert Counter(rec.fmt.name for rec in recs)["sched_switch"] == 1172
    ts = [rec.ts for rec in recs]
    assert ts == sorted(ts)


def test_v6_and_v7_zstd_hold_the_same_events() -> None:
    a, b = reader("e_mixed.v6.dat"), reader("e_mixed.v7z.dat")
    assert b.version == 7 and b.compression == "zstd" and a.version == 6 and a.compression is None
    ra, rb = list(a.records()), list(b.records())
    assert [(x.cpu, x.ts, x.payload) for x in ra] == [(x.cpu, x.ts, x.payload) for x in rb]
    assert a.kallsyms_text == b.kallsyms_text and a.cmdlines_text == b.cmdlines_text
    assert a.formats.keys() == b.formats.keys()
    # compressed pages still map to a place in the file
    data, off = b.cpu_buffer(1)
    assert len(data) % 4096 == 0 and off == b.buffer.cpus[1].file_offset
    assert off <= b.file_offset_of(1, len(data) - 1) < b.file_size


def test_raw_pages_walked_directly_equal_pages_v7_dat() -> None:
    r = reader("raw-pages/pages.v7.dat")
    for cpu in (0, 1):
        raw = np.fromfile(FIXTURES / f"raw-pages/cpu{cpu}.raw", np.uint8)
        direct = walk_pages(raw, 4096)
        via = r.cpu_index(cpu)
        data, _ = r.cpu_buffer(cpu)
        assert direct.ts.tolist() == via.ts.tolist()
        assert [raw[o : o + n].tobytes() for o, n in zip(direct.offset, direct.length)] == \
            [data[o : o + n].tobytes() for o, n in zip(via.offset, via.length)]


def test_metadata() -> None:
    a = reader("a_syscalls.v6.dat")
    assert (a.version, a.little_endian, a.long_size, a.page_size) == (6, True, 8, 4096)
    assert a.trace_clock == "local" and a.timestamps_in_usecs
    assert a.header_page.commit_size == 8 and a.header_page.data_size == 4080
    assert "6.18.44" in a.options["uname"] and a.options["version"].startswith("3.1.6")
    assert len(a.options["cpustat"]) == 2 and a.options["cpucount"] == 2
    assert len(a.symbols.kallsyms) == 0  # an empty kallsyms section
    assert {f.system for f in a.formats.values()} == {"ftrace", "raw_syscalls"}
    c = reader("c_markers.v6.dat")
    assert {f.system for f in c.formats.values()} == {"ftrace"}  # no event systems at all
    assert len(c.formats) == 18 and len(c.symbols.kallsyms) == 2
    e = reader("e_mixed.v7z.dat")
    assert len(e.symbols.kallsyms) == 370 and e.trace_clock == "local"
    assert [b.name for b in e.buffers] == [""]
    assert e.lost_events()[1].lost == 0


# -- bad input ------------------------------------------------------------------


def write(tmp_path: Path, data: bytes, name: str = "bad.dat") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("head, words", [
    (b"", "empty"),
    (b"PERFILE2" + bytes(100), "perf.data"),
    (b"\x1f\x8b\x08\x00" + bytes(100), "gzip"),
    (b"\x28\xb5\x2f\xfd" + bytes(100), "zstd"),
    (b"# tracer: nop\n#\n", "tracefs"),
    (b"hello world, not a trace", "not a trace.dat"),
    (b"\x17\x08\x44tra", "truncated"),
    (b"\x17\x08\x44tracing8\0\0\x08\0\x10\0\0", "version 8 is not supported"),
    (b"\x17\x08\x44tracing6\0\0\x08\0\x10\0\0", "header_page"),
])
def test_not_a_trace_dat(tmp_path: Path, head: bytes, words: str) -> None:
    with pytest.raises(TraceFormatError) as e:
        TraceDatReader(write(tmp_path, head))
    assert words in str(e.value) and str(tmp_path) in str(e.value)
    assert e.value.offset is not None


def test_identify_input() -> None:
    assert identify_input(b"\x17\x08\x44tracing6\0") is None
    assert "perf.data" in identify_input(b"PERFILE2....")


def full_read(path: Path, keep_going: bool = True) -> int:
    """Touch everything a reader offers; returns the events found."""
    r = TraceDatReader(path, keep_going=keep_going)
    r.formats, r.symbols, r.trace_clock, r.header_event  # noqa: B018
    return sum(1 for _ in r.records())


@pytest.mark.parametrize("name", ["b_sched.v6.dat", "e_mixed.v7z.dat", "raw-pages/pages.v7.dat"])
def test_truncated_anywhere_raises_trace_format_error(tmp_path: Path, name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    cuts = sorted({1, 9, 12, 17, 20, 40, 200, 1000, 5000, 20000} | set(random.Random(1).sample(range(len(data)), 25)))
    for cut in cuts:
        p = write(tmp_path, data[:cut])
        try:
            full_read(p, keep_going=False)
        except TraceFormatError as e:
            assert e.path == str(p)
            continue
        raise AssertionError(f"cut at {cut} was not noticed")


def test_truncated_data_keeps_events_before_the_damage(tmp_path: Path) -> None:
    r = reader("a_syscalls.v6.dat")
    cpu1 = r.buffer.cpus[1]
    cut = cpu1.file_offset + 10 * 4096 + 100  # 10 whole pages of CPU 1 and a bit
    p = write(tmp_path, (FIXTURES / "a_syscalls.v6.dat").read_bytes()[:cut])
    t = TraceDatReader(p)
    with pytest.raises(TraceFormatError) as e:
        t.index()
    err = e.value
    assert err.cpu == 1 and err.offset == cut and "truncated" in str(err)
    partial = err.partial
    n1 = len(t.cpu_index(1))
    assert np.count_nonzero(partial.cpu == 1) == n1 > 0
    assert np.all(partial.ts <= partial.ts[partial.cpu == 1].max())
    # records() delivers the same events, then raises
    got = []
    with pytest.raises(TraceFormatError):
        for rec in t.records():
            got.append(rec)
    assert len(got) == len(partial)
    # keep-going: every CPU 0 event, and CPU 1's whole pages
    kg = TraceDatReader(p, keep_going=True).index()
    assert np.count_nonzero(kg.cpu == 0) == 3272 and len(kg.damage) == 1


def test_corrupt_page_names_cpu_page_and_offset(tmp_path: Path) -> None:
    r = reader("b_sched.v6.dat")
    cpu0 = r.buffer.cpus[0]
    data = bytearray((FIXTURES / "b_sched.v6.dat").read_bytes())
    page = 3
    at = cpu0.file_offset + page * 4096
    data[at + 8 : at + 16] = (0x2000).to_bytes(8, "little")  # commit larger than the page
    p = write(tmp_path, bytes(data))
    with pytest.raises(TraceFormatError) as e:
        TraceDatReader(p).index()
    err = e.value
    assert (err.cpu, err.page, err.offset) == (0, page, at + 8)
    assert f"CPU 0 page {page} (file offset {at + 8:#x})" in str(err)
    good = TraceDatReader(p, keep_going=True).index()
    lost = len(r.cpu_index(0)) - np.count_nonzero(good.cpu == 0)
    assert 0 < lost < 200 and np.count_nonzero(good.cpu == 1) == 1134


def test_event_past_commit_is_reported(tmp_path: Path) -> None:
    r = reader("b_sched.v6.dat")
    idx = r.cpu_index(1)
    data = bytearray((FIXTURES / "b_sched.v6.dat").read_bytes())
    base = r.buffer.cpus[1].file_offset
    # make the last event of page 0 claim 28 words
    last = int(idx.page_first[1]) - 1
    hdr_at = base + int(idx.offset[last]) - (8 if idx.length[last] > 112 else 4)
    word = int.from_bytes(data[hdr_at : hdr_at + 4], "little")
    data[hdr_at : hdr_at + 4] = ((word & ~31) | 28).to_bytes(4, "little")
    p = write(tmp_path, bytes(data))
    with pytest.raises(TraceFormatError) as e:
        TraceDatReader(p).index()
    assert e.value.offset == hdr_at and e.value.page == 0 and "runs past commit" in str(e.value)


def test_bad_compressed_chunk(tmp_path: Path) -> None:
    r = reader("e_mixed.v7z.dat")
    data = bytearray((FIXTURES / "e_mixed.v7z.dat").read_bytes())
    cpu1 = r.buffer.cpus[1].file_offset
    chunk0 = cpu1 + 4
    zsize = int.from_bytes(data[chunk0 : chunk0 + 4], "little")
    chunk1 = chunk0 + 8 + zsize
    data[chunk1 + 20 : chunk1 + 40] = bytes(20)
    p = write(tmp_path, bytes(data))
    with pytest.raises(TraceFormatError) as e:
        TraceDatReader(p).index()
    assert e.value.cpu == 1 and e.value.offset == chunk1 and "chunk 1" in str(e.value)
    kg = TraceDatReader(p, keep_going=True).index()
    assert np.count_nonzero(kg.cpu == 0) == 6520 and 0 < np.count_nonzero(kg.cpu == 1) < 27344


def test_section_past_end_of_file(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "raw-pages/pages.v7.dat").read_bytes())
    r = reader("raw-pages/pages.v7.dat")
    off = r._section_offsets[17]  # FTRACE_EVENTS option value
    i = data.find(off.to_bytes(8, "little"))
    data[i : i + 8] = (len(data) + 100).to_bytes(8, "little")
    p = write(tmp_path, bytes(data))
    t = TraceDatReader(p)
    with pytest.raises(TraceFormatError) as e:
        t.formats  # noqa: B018
    assert "past the end of the file" in str(e.value) and e.value.offset == len(data) + 100


def test_zlib_file(tmp_path: Path) -> None:
    """zlib blocks as trace-cmd writes them (zlib's compress2 format) decode; damaged ones raise."""
    import zstandard

    src = (FIXTURES / "e_mixed.v7z.dat").read_bytes()
    r = reader("e_mixed.v7z.dat")
    d = zstandard.ZstdDecompressor()
    for cpu in (0, 1):
        off = r.buffer.cpus[cpu].file_offset
        count = int.from_bytes(src[off : off + 4], "little")
        pos, out = off + 4, []
        for _ in range(count):
            z = int.from_bytes(src[pos : pos + 4], "little")
            n = int.from_bytes(src[pos + 4 : pos + 8], "little")
            out.append(d.decompress(src[pos + 8 : pos + 8 + z], max_output_size=n))
            pos += 8 + z
        from tracewatch.formats.tracedat import _Decompressor

        zl = _Decompressor("zlib", "1.2", "x")
        blob = zlib.compress(b"".join(out))
        assert zl.block(blob, len(b"".join(out)), 0, "t") == r.cpu_buffer(cpu)[0].tobytes()
        with pytest.raises(TraceFormatError):
            zl.block(blob[:-5], len(b"".join(out)), 0, "t")


@pytest.mark.parametrize("name", ["b_sched.v6.dat", "e_mixed.v7z.dat"])
def test_random_corruption_only_raises_trace_format_error(tmp_path: Path, name: str) -> None:
    """Flipped bytes in the metadata and the first pages: a TraceFormatError or a result, never a crash."""
    src = (FIXTURES / name).read_bytes()
    rng = random.Random(7)
    region = min(len(src), 40000)
    for i in range(60):
        data = bytearray(src)
        for _ in range(rng.choice([1, 4, 16])):
            data[rng.randrange(region)] = rng.randrange(256)
        p = write(tmp_path, bytes(data), f"c{i}.dat")
        try:
            full_read(p, keep_going=bool(i % 2))
        except TraceFormatError:
            pass


def _head_merge_reference(ts: np.ndarray, starts: list[int], ends: list[int]) -> list[int]:
    """trace-cmd's rule spelled out: the head with the smallest timestamp, ties to the lower CPU."""
    heads, out = list(starts), []
    while True:
        live = [c for c in range(len(starts)) if heads[c] < ends[c]]
        if not live:
            return out
        best = min(live, key=lambda c: (int(ts[heads[c]]), c))
        out.append(heads[best])
        heads[best] += 1


@pytest.mark.parametrize("seed", range(40))
def test_merge_kernel_is_trace_cmds_order(seed: int) -> None:
    """Random per-CPU streams (sorted or not, many ties, cut short, lost events) merge as trace-cmd does."""
    from tracewatch.kernels.merge import merge_events, merge_kernel

    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 10))
    full = rng.integers(0, 40, k)
    counts = np.minimum(full, rng.integers(0, 45, k))
    starts = np.concatenate([[0], np.cumsum(full)[:-1]]).astype(np.int64)
    ends = starts + counts
    parts = [rng.integers(0, 25, n).astype(np.uint64) for n in full]
    if seed % 2:
        parts = [np.sort(p) for p in parts]
    ts = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    n = len(ts)
    off = np.arange(n, dtype=np.int64) * 8
    ln = (np.arange(n) % 7).astype(np.int32)
    ty = (np.arange(n) % 5).astype(np.uint16)
    kept = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)] + [np.zeros(0, np.int64)])
    lost_at = np.sort(rng.choice(kept, size=min(len(kept), 4), replace=False)).astype(np.int64)
    lost = rng.integers(-1, 50, len(lost_at)).astype(np.int64)
    total = int(counts.sum())
    out = [np.empty(total, t) for t in (np.int32, np.uint64, np.int64, np.int32, np.uint16)]
    out.append(np.zeros(total, np.int64))
    assert merge_events(ts, off, ln, ty, starts, ends, lost_at, lost, *out) == total
    order = _head_merge_reference(ts, starts.tolist(), ends.tolist())
    missed = np.zeros(n, np.int64)
    missed[lost_at] = lost
    cpu_of = np.repeat(np.arange(k), full)
    assert out[2].tolist() == off[order].tolist()
    assert out[0].tolist() == cpu_of[order].tolist() and out[1].tolist() == ts[order].tolist()
    assert out[3].tolist() == ln[order].tolist() and out[4].tolist() == ty[order].tolist()
    assert out[5].tolist() == missed[order].tolist()
    if seed % 2:  # time-ordered streams: the same as a stable sort of the CPUs one after another
        assert order == kept[np.argsort(ts[kept], kind="stable")].tolist()

    # resumed: each CPU's events shown a window at a time, at most `limit` written per call
    # (how a file is merged without walking it whole); the same order, the same lost counts
    window = [int(w) for w in rng.integers(1, 6, k)]
    limit = int(rng.integers(1, 12))
    seen = [int(s) for s in starts]  # per CPU: events shown so far end here
    heads = [int(s) for s in starts]
    got: list[list[int]] = [[] for _ in range(6)]
    head = np.empty(k, np.int64)
    while True:
        for c in range(k):
            if heads[c] == seen[c] and seen[c] < int(ends[c]):
                seen[c] = min(int(ends[c]), seen[c] + window[c])
        more = np.array([seen[c] < int(ends[c]) for c in range(k)], np.uint8)
        part = [np.empty(limit, t) for t in (np.int32, np.uint64, np.int64, np.int32, np.uint16)]
        part.append(np.zeros(limit, np.int64))
        w, stop = merge_kernel(ts, off, ln, ty, np.array(heads, np.int64), np.array(seen, np.int64), more,
                               lost_at, lost, limit, *part, head)
        for g, a in zip(got, part):
            g.extend(a[:w].tolist())
        heads = head.tolist()
        if w == 0 and stop < 0:
            break
    assert got == [a.tolist() for a in out]
