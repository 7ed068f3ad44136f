"""The source seam: FileSource and MemorySource keep the EventSource contract (the live
session's check is in tests/live/test_source_contract.py, with the same checker), and
MemorySource hands over what a file of the same pages gives."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import fixture_path
from tracewatch.errors import TraceFormatError
from tracewatch.sources import EventSource, SplittableSource, StoppableSource, splits_whole
from tracewatch.sources.file import FileSource
from tracewatch.testing import MemorySource, PageBuilder, event_format, record


def check_event_source(source, *, min_events: int = 1) -> list:
    """Check what the EventSource contract promises of ``source``; returns its chunks.

    Chunks are in time order within and across chunks, every event's type is one of
    ``formats``, every record starts with its ``common_type`` and lies in its CPU's
    buffer, ``context`` shares the formats, and lost events are a dict of CPU -> count.
    """
    assert isinstance(source, EventSource)
    assert isinstance(source.live, bool)
    assert dict(source.context.formats) == dict(source.formats)
    chunks = list(source.chunks())
    assert chunks, "no chunks"
    ts = np.concatenate([c.ts for c in chunks])
    assert len(ts) >= min_events
    assert np.all(np.diff(ts) >= 0), "events out of time order"
    for chunk in chunks:
        assert chunk.context is source.context
        assert set(np.unique(chunk.type_id).tolist()) <= set(source.formats)
        for i in range(0, len(chunk), max(1, len(chunk) // 50)):  # a sample of each chunk's records
            buf = chunk.buffers[int(chunk.cpu[i])]
            off, ln = int(chunk.offset[i]), int(chunk.length[i])
            assert off + ln <= len(buf)
            little = "little" if chunk.little else "big"
            assert int.from_bytes(buf[off:off + 2].tobytes(), little) == int(chunk.type_id[i])
    lost = source.lost_events()
    assert isinstance(lost, dict)
    assert all(isinstance(c, int) and (n >= 0 or n == -1) for c, n in lost.items())
    return chunks


def test_file_source_keeps_the_contract():
    with FileSource(str(fixture_path("b_sched.v6.dat")), chunk_events=500) as src:
        chunks = check_event_source(src, min_events=501)
        assert len(chunks) > 1 and src.live is False
        assert isinstance(src, SplittableSource) and splits_whole(src)
        assert not isinstance(src, StoppableSource)  # a file ends where it ends
        # split's positions are the places of the rows in the order chunks() gives
        order_types = np.concatenate([c.type_id for c in chunks])
        for batch, pos in src.split():
            assert np.all(order_types[pos] == batch.format_.id)


def test_file_source_too_big_to_merge_whole_does_not_split():
    with FileSource(str(fixture_path("b_sched.v6.dat")), whole_bytes=0) as src:
        assert isinstance(src, SplittableSource) and not splits_whole(src)


def _demo_source(**kwargs) -> tuple[MemorySource, object, object]:
    a = event_format("demo:a", 300, "int value; unsigned long addr;")
    b = event_format("demo:b", 301, "char comm[16]; u64 n;")
    src = MemorySource([a, b], **kwargs)
    src.add(0, 1_000, record(a, value=1))
    src.add(1, 1_500, record(b, comm=b"one", n=9))
    src.lose(1, 5)
    src.add(1, 2_000, record(a, value=-3))
    src.add(0, 2_500, record(a, value=4, common_pid=42))
    src.lose(0)
    src.add(0, 3_500, record(b, n=1 << 40))
    return src, a, b


def test_memory_source_keeps_the_contract():
    src, a, b = _demo_source(chunk_events=2)
    chunks = check_event_source(src, min_events=5)
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert splits_whole(src) and src.live is False
    src.live = True  # a test may present the same events as a live run
    assert src.live is True and isinstance(src, EventSource)
    src.merges_whole = False
    assert not splits_whole(src)
    assert isinstance(src, StoppableSource)
    src.close()
    assert src.closed


def test_memory_source_events_decode_as_written():
    src, a, b = _demo_source()
    (chunk,) = list(src.chunks())
    assert chunk.ts.tolist() == [1_000, 1_500, 2_000, 2_500, 3_500]
    assert chunk.cpu.tolist() == [0, 1, 1, 0, 0]
    evs = chunk.events()
    assert [e.value for e in evs if e.common_type == a.id] == [1, -3, 4]
    assert [e.n for e in evs if e.common_type == b.id] == [9, 1 << 40]
    assert evs[3].common_pid == 42
    assert evs[1].comm == "one"  # a char array reads as a string
    assert "value=-3" in str(evs[2])


def test_memory_source_lost_event_marks():
    src, _a, _b = _demo_source()
    (chunk,) = list(src.chunks())
    # the mark is on the first event after the loss: CPU 1's at 2000 (5 lost), CPU 0's at 3500 (unknown)
    assert list(chunk.losses()) == [(1, 5, 2_000), (0, -1, 3_500)]
    assert src.lost_events() == {0: -1, 1: 5}


def test_memory_source_split_positions_follow_chunk_order():
    src, a, b = _demo_source()
    got = {batch.format_.id: pos.tolist() for batch, pos in src.split()}
    assert got == {a.id: [0, 2, 3], b.id: [1, 4]}
    only_b = [(batch.format_.id, pos.tolist()) for batch, pos in src.split("demo:b")]
    assert only_b == [(b.id, [1, 4])]


def test_memory_source_without_events_yields_nothing():
    src = MemorySource([event_format("demo:a", 300, "int value;")])
    assert list(src.chunks()) == [] and list(src.split()) == []
    assert src.lost_events() == {}


def test_memory_source_rejects_out_of_place_input():
    a = event_format("demo:a", 300, "int value;")
    with pytest.raises(ValueError):
        event_format("no_system", 1, "int x;")
    with pytest.raises(ValueError):
        event_format("demo:x", 1, "struct foo x;")
    with pytest.raises(ValueError):
        record(a, nope=1)
    with pytest.raises(ValueError):
        record(event_format("demo:c", 303, "char comm[16];"), comm=5)
    src = MemorySource([a])
    with pytest.raises(ValueError):
        src.lose(0, 0)


def test_memory_source_of_a_files_pages_gives_the_files_events():
    """The raw pages a trace.dat was written from, handed to a MemorySource, come out as
    FileSource gives the file: same events in the same order, same lost-event marks."""
    with FileSource(str(fixture_path("raw-pages/pages.v7.dat"))) as file_src:
        want = list(file_src.chunks())
        pages = {c: fixture_path(f"raw-pages/cpu{c}.raw").read_bytes() for c in (0, 1)}
        mem = MemorySource(file_src.formats, pages, symbols=file_src.context.symbols, chunk_events=1000)
        got = check_event_source(mem, min_events=1000)
        for name in ("ts", "cpu", "type_id", "length", "missed_before"):
            assert np.array_equal(np.concatenate([getattr(c, name) for c in got]),
                                  np.concatenate([getattr(c, name) for c in want])), name
        assert [str(e) for e in got[0].events()[:50]] == [str(e) for e in want[0].events()[:50]]


def test_memory_source_takes_page_builders():
    a = event_format("demo:a", 300, "int value;")
    pb = PageBuilder(page_size=256)
    for i in range(40):  # several pages of 256 bytes
        pb.add(1_000 + 10 * i, record(a, value=i))
    src = MemorySource([a], {3: pb})
    (chunk,) = list(src.chunks())
    assert [e.value for e in chunk.events()] == list(range(40))
    assert set(chunk.cpu.tolist()) == {3} and len(pb.pages) > 1


def test_memory_source_damage_comes_after_the_good_events():
    a = event_format("demo:a", 300, "int value;")
    pb = PageBuilder(page_size=256)
    for i in range(40):
        pb.add(1_000 + 10 * i, record(a, value=i))
    data = bytearray(pb.build())
    data[8:16] = (10_000).to_bytes(8, "little")  # the first page's commit: far past the page's end
    on_first_page = sum(1 for e in pb.expected if e.page == 0)
    src = MemorySource([a], {0: bytes(data)}, page_size=256)
    got = []
    with pytest.raises(TraceFormatError) as e:
        for chunk in src.chunks():
            got.extend(ev.value for ev in chunk.events())
    assert e.value.cpu == 0
    assert got == list(range(on_first_page, 40))  # the other pages' events, then the error
    with pytest.raises(TraceFormatError):
        list(src.split())


def test_memory_source_stop_tells_listeners_and_ends_the_chunks():
    src, _a, _b = _demo_source(chunk_events=1)
    told = []
    src.add_stop_listener(lambda: told.append(src.stop_reason))
    chunks = src.chunks()
    first = next(chunks)
    src.stop("a signal")
    src.stop("again")  # told once
    assert told == ["a signal"] and len(first) == 1
    assert list(chunks) == []
