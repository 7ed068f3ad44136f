"""LiveMerger: pages arriving per CPU in batches come out in the file reader's order."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import fixture_path
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.formats.context import TraceContext
from tracewatch.stream.merge import LiveMerger


def _pages(cpu: int) -> np.ndarray:
    return np.frombuffer(fixture_path(f"raw-pages/cpu{cpu}.raw").read_bytes(), dtype=np.uint8)


@pytest.mark.parametrize("batch_pages", [1, 3, 16])
def test_batches_merge_into_file_order(batch_pages):
    ref = TraceDatReader(str(fixture_path("raw-pages/pages.v7.dat")))
    want = ref.index()
    ctx = TraceContext(ref.formats, ref.symbols)
    m = LiveMerger(ctx, [0, 1], 4096)
    pages = {c: _pages(c) for c in (0, 1)}
    got_ts, got_cpu, got_type = [], [], []
    n_pages = len(pages[0]) // 4096
    for start in range(0, n_pages, batch_pages):
        for cpu in (0, 1):
            m.add_pages(cpu, pages[cpu][start * 4096 : (start + batch_pages) * 4096])
        chunk = m.release()
        if chunk is not None:
            got_ts.append(chunk.ts), got_cpu.append(chunk.cpu), got_type.append(chunk.type_id)
            # every event's bytes are reachable through the chunk's buffers
            for i in range(min(5, len(chunk))):
                buf = chunk.buffers[int(chunk.cpu[i])]
                tid = int.from_bytes(buf[chunk.offset[i] : chunk.offset[i] + 2].tobytes(), "little")
                assert tid == chunk.type_id[i]
    last = m.release(final=True)
    if last is not None:
        got_ts.append(last.ts), got_cpu.append(last.cpu), got_type.append(last.type_id)
    ts = np.concatenate(got_ts)
    assert len(ts) == len(want) == 2609
    assert np.array_equal(ts, want.ts.astype(np.int64))
    assert np.array_equal(np.concatenate(got_cpu), want.cpu)
    assert np.array_equal(np.concatenate(got_type), want.type_id)
    assert m.out_of_order == 0 and m.pending_events == 0


def test_idle_cpu_stops_holding_back():
    ref = TraceDatReader(str(fixture_path("raw-pages/pages.v7.dat")))
    m = LiveMerger(TraceContext(ref.formats, ref.symbols), [0, 1], 4096, idle_after=2)
    m.add_pages(0, _pages(0)[: 4 * 4096])
    assert m.release() is None  # CPU 1 has not spoken: it could still hold earlier events
    chunk = m.release()  # CPU 1 was idle for two rounds: CPU 0's events go
    assert chunk is not None and len(chunk) > 0 and set(chunk.cpu.tolist()) == {0}


def _collect(m, chunks):
    out = [c for c in chunks if c is not None]
    last = m.release(final=True)
    if last is not None:
        out.append(last)
    return out


def test_consecutive_batches_are_walked_in_place():
    """Batches that follow one another in memory (the live reader's arenas) are one run: no copy."""
    ref = TraceDatReader(str(fixture_path("raw-pages/pages.v7.dat")))
    want = ref.index()
    m = LiveMerger(TraceContext(ref.formats, ref.symbols), [0, 1], 4096)
    pages = {c: _pages(c).copy() for c in (0, 1)}
    n_pages = len(pages[0]) // 4096
    chunks = []
    for start in range(0, n_pages, 2):
        for cpu in (0, 1):
            m.add_pages(cpu, pages[cpu][start * 4096 : (start + 2) * 4096])
        chunks.append(m.release())
        for c in (0, 1):  # a chunk's buffers are views of the pages handed in
            if chunks[-1] is not None and len(chunks[-1].buffers[c]):
                assert chunks[-1].buffers[c].base is pages[c]
    got = _collect(m, chunks)
    assert np.array_equal(np.concatenate([c.ts for c in got]), want.ts.astype(np.int64))
    assert np.array_equal(np.concatenate([c.cpu for c in got]), want.cpu)
    assert m.stats["copied_bytes"] == 0
    assert m.events_in == len(want)


def test_pending_pages_move_into_room_before_the_next_arena():
    """Pages still pending when a CPU's reader moved to a new arena are copied into the room before
    the new pages (``prepend``), so the new pages are not copied."""
    ref = TraceDatReader(str(fixture_path("raw-pages/pages.v7.dat")))
    want = ref.index()
    pages = {c: _pages(c) for c in (0, 1)}
    n_pages = len(pages[0]) // 4096
    half = n_pages // 2
    room_pages = n_pages
    # per CPU two "arenas": the first half of the pages, then room and the second half
    arenas = {}
    for c in (0, 1):
        a = np.zeros(n_pages * 4096, np.uint8)
        a[: half * 4096] = pages[c][: half * 4096]
        b = np.zeros((room_pages + n_pages - half) * 4096, np.uint8)
        b[room_pages * 4096 :] = pages[c][half * 4096 :]
        arenas[c] = (a, b)
    given = []

    def prepend(cpu, first, nbytes):
        b = arenas[cpu][1]
        at = first.__array_interface__["data"][0] - b.__array_interface__["data"][0]
        if first.base is not b or at != room_pages * 4096 or nbytes > at:
            return None
        given.append((cpu, nbytes))
        return b[at - nbytes : at]

    m = LiveMerger(TraceContext(ref.formats, ref.symbols), [0, 1], 4096, prepend=prepend)
    chunks = []
    # CPU 1 delivers everything first, so CPU 0's pages wait behind the watermark
    for c in (1, 0):
        a, _ = arenas[c]
        for p in range(0, half, 3):
            m.add_pages(c, a[p * 4096 : min(p + 3, half) * 4096])
    chunks.append(m.release())
    for c in (0, 1):
        _, b = arenas[c]
        m.add_pages(c, b[room_pages * 4096 :])
    chunks.append(m.release())
    got = _collect(m, chunks)
    assert np.array_equal(np.concatenate([c.ts for c in got]), want.ts.astype(np.int64))
    assert np.array_equal(np.concatenate([c.cpu for c in got]), want.cpu)
    assert np.array_equal(np.concatenate([c.type_id for c in got]), want.type_id)
    assert given and m.stats["copied_bytes"] == 0


def test_lost_events_counted_once_when_pages_are_walked_again():
    """Pages kept past a release are walked again; their lost-event marks count once, and the
    first event after the loss carries it once."""
    from tracewatch.testing.page_builder import PageBuilder, make_payload

    b0 = PageBuilder()
    b0.begin_page(100, missed=42)
    b0.event(make_payload(1, 8))
    b0.event(make_payload(1, 8), delta=50)  # ts 150
    b0.begin_page(300, missed=-1)
    b0.event(make_payload(1, 8))
    cpu0 = np.frombuffer(b0.build(), np.uint8)
    b1 = PageBuilder()
    b1.begin_page(120)
    b1.event(make_payload(1, 8))
    cpu1 = np.frombuffer(b1.build(), np.uint8)
    ref = TraceDatReader(str(fixture_path("raw-pages/pages.v7.dat")))
    m = LiveMerger(TraceContext(ref.formats, ref.symbols), [0, 1], 4096)
    m.add_pages(0, cpu0)
    m.add_pages(1, cpu1)
    c1 = m.release()  # watermark 120: CPU 0's event at 100 and CPU 1's at 120
    assert c1.ts.tolist() == [100, 120] and c1.cpu.tolist() == [0, 1]
    assert c1.missed_before.tolist() == [42, 0]
    c2 = m.release()
    c3 = m.release(final=True)
    rest = [c for c in (c2, c3) if c is not None]
    assert np.concatenate([c.ts for c in rest]).tolist() == [150, 300]
    assert np.concatenate([c.missed_before for c in rest]).tolist() == [0, -1]
    assert m.lost_events == {0: 42, 1: 0}
    assert m.events_in == 4 and m.pending_events == 0
