"""PageRing: whole raw pages kept per CPU under one byte budget, evicted by time, memory flat."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from tests.conftest import FIXTURES
from tracewatch.formats.ring_page import walk_pages
from tracewatch.recorder.page_ring import PageRing, page_times, parse_size
from tracewatch.testing import PageBuilder, make_payload

PAGE = 4096
RAW_PAGES = FIXTURES / "raw-pages"


def synthetic_pages(start_ts: int, period_ns: int, count: int, *, size: int = 24, type_id: int = 7) -> bytes:
    """Pages of ``count`` events ``period_ns`` apart, as one CPU's kernel would write them."""
    b = PageBuilder(PAGE)
    for i in range(count):
        b.add(start_ts + i * period_ns, make_payload(type_id, size, fill=i))
    return b.build()


def pages_of(data: bytes) -> list[np.ndarray]:
    arr = np.frombuffer(data, np.uint8)
    return [arr[i : i + PAGE] for i in range(0, len(arr), PAGE)]


def test_parse_size():
    assert parse_size("64M") == 64 << 20
    assert parse_size("512k") == 512 << 10
    assert parse_size("1G") == 1 << 30
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("lots")


def test_keep_smaller_than_a_page_is_refused():
    with pytest.raises(ValueError, match="holds no"):
        PageRing(1000, PAGE)


def test_bytes_never_exceed_keep_and_newest_pages_stay():
    ring = PageRing("40K", PAGE)
    data = pages_of(synthetic_pages(1_000_000, 1000, 5000))
    for i, page in enumerate(data):
        ring.add(0, page)
        assert ring.bytes <= 40 << 10
    assert len(ring) == 10
    snap = ring.snapshot()
    assert list(snap) == [0]
    kept = snap[0][0]
    # exactly the 10 newest pages, byte for byte
    assert kept.tobytes() == b"".join(p.tobytes() for p in data[-10:])


def test_eviction_by_time_gives_every_cpu_the_same_span():
    # CPU 0 writes 20x more events per ns than CPU 1: equal byte shares would give CPU 1
    # a 20x longer history; eviction by time keeps the same span on both
    ring = PageRing("64K", PAGE)
    dense = pages_of(synthetic_pages(0, 50, 40_000))
    sparse = pages_of(synthetic_pages(0, 1000, 2_000))
    dense_last = [int(page_times(walk_pages(p, PAGE))[1][0]) for p in dense]
    sparse_last = [int(page_times(walk_pages(p, PAGE))[1][0]) for p in sparse]
    # feed in time order, as a live reader would: each page once its last event is due
    feed = sorted([(t, 0, p) for t, p in zip(dense_last, dense)] + [(t, 1, p) for t, p in zip(sparse_last, sparse)],
                  key=lambda x: x[0])
    for _t, cpu, page in feed:
        ring.add(cpu, page)
    st = ring.stats()
    assert st.bytes == 64 << 10
    assert set(st.per_cpu_pages) == {0, 1} and st.per_cpu_pages[0] > st.per_cpu_pages[1]
    snap = ring.snapshot()
    first = {cpu: int(walk_pages(snap[cpu][0], PAGE).ts[0]) for cpu in snap}
    # both CPUs start within one sparse page's time of each other
    sparse_page_span = sparse_last[1] - sparse_last[0]
    assert abs(first[0] - first[1]) <= sparse_page_span
    # everything evicted is older than every CPU's oldest kept page
    kept_heads = [int(page_times(walk_pages(snap[c][0][:PAGE], PAGE))[1][0]) for c in snap]
    n_kept = st.per_cpu_pages
    evicted = dense_last[: len(dense) - n_kept[0]] + sparse_last[: len(sparse) - n_kept[1]]
    assert max(evicted) <= min(kept_heads)


def test_snapshot_since_and_until_select_pages_by_their_events():
    ring = PageRing("1M", PAGE)
    data = synthetic_pages(1_000_000, 1000, 3000)
    ring.add(3, np.frombuffer(data, np.uint8))
    idx = walk_pages(data, PAGE)
    first, last, _ = page_times(idx)
    since = int(idx.ts[1500])
    snap = ring.snapshot(since_ts=since)[3][0]
    got = walk_pages(snap, PAGE)
    # whole pages: the first kept page holds the event at `since`, nothing older is a whole page
    assert got.ts[0] <= since and int(got.ts[-1]) == int(idx.ts[-1])
    assert int(np.count_nonzero(last >= since)) * PAGE == len(snap)
    until = int(idx.ts[500])
    snap = ring.snapshot(until_ts=until)[3][0]
    assert len(snap) == int(np.count_nonzero(first <= until)) * PAGE


def test_snapshot_is_a_copy():
    ring = PageRing("8K", PAGE)
    a, b, c = pages_of(synthetic_pages(0, 1000, 600))[:3]
    ring.add(0, a)
    ring.add(0, b)
    snap = ring.snapshot()[0][0]
    before = snap.tobytes()
    ring.add(0, c)  # reuses the slot of `a`
    assert snap.tobytes() == before == a.tobytes() + b.tobytes()


def test_batch_larger_than_the_ring_keeps_its_newest_pages():
    ring = PageRing("16K", PAGE)
    data = np.frombuffer(synthetic_pages(0, 1000, 3000), np.uint8)
    ring.add(1, data)
    assert len(ring) == 4
    assert ring.snapshot()[1][0].tobytes() == data[-4 * PAGE :].tobytes()
    assert ring.pages_evicted == len(data) // PAGE - 4


@pytest.mark.skipif(not RAW_PAGES.is_dir(), reason="shared fixtures not present")
def test_real_pages_stats():
    ring = PageRing("64K", PAGE)
    total = 0
    for cpu in (0, 1):
        data = np.fromfile(RAW_PAGES / f"cpu{cpu}.raw", np.uint8)
        total += len(walk_pages(data, PAGE))
        ring.add(cpu, data)
    st = ring.stats()
    # 32 pages of 4 KiB offered, 16 kept: the newest 64 KiB of both CPUs
    assert st.pages == 16 and st.bytes == 64 << 10
    assert 0 < st.events < total
    assert st.oldest_ts < st.newest_ts and st.span_ns == st.newest_ts - st.oldest_ts


def test_memory_stays_flat_after_ten_times_keep():
    keep = 256 << 10
    ring = PageRing(keep, PAGE)
    batch = pages_of(synthetic_pages(0, 500, 40_000))  # about 300 pages
    t = [0]

    def feed(n_bytes: int) -> None:
        added = 0
        while added < n_bytes:
            for cpu in range(4):
                page = batch[(added // PAGE) % len(batch)].copy()
                # make time go on: rewrite the page timestamp so eviction sees ever newer pages
                page[:8] = np.frombuffer((t[0]).to_bytes(8, "little"), np.uint8)
                t[0] += 1_000_000
                ring.add(cpu, page)
                added += PAGE

    feed(2 * keep)  # fill, and let every structure reach its size
    gc.collect()
    tracemalloc.start()
    objects_full = len(gc.get_objects())
    mem_full, _ = tracemalloc.get_traced_memory()
    feed(10 * keep)
    gc.collect()
    mem_after, _ = tracemalloc.get_traced_memory()
    objects_after = len(gc.get_objects())
    tracemalloc.stop()
    assert ring.bytes == keep
    assert mem_after - mem_full < 64 << 10
    assert objects_after - objects_full < 50


def _held_bytes(h, cpu: int) -> bytes:
    import ctypes

    out = b""
    for addr, length in h.iovecs(cpu).tolist():
        out += ctypes.string_at(addr, length)
    assert out == b"".join(bytes(v) for v in h.views(cpu))
    return out


def test_hold_keeps_pages_in_place_and_copies_a_slot_only_when_it_is_reused():
    ring = PageRing("16K", PAGE)  # 4 slots
    pages = pages_of(synthetic_pages(0, 1000, 2000))
    for p in pages[:4]:
        ring.add(0, p)
    h = ring.hold()
    assert h.slots[0].tolist() == [0, 1, 2, 3] and len(h.iovecs(0)) == 1  # adjacent slots: one writev entry
    assert _held_bytes(h, 0) == b"".join(p.tobytes() for p in pages[:4])
    ring.add(0, pages[4])  # evicts and reuses slot 0: the hold gets its own copy first
    assert list(h.saved) == [0]
    assert _held_bytes(h, 0) == b"".join(p.tobytes() for p in pages[:4])
    first, last, counts, missed = h.times(0)
    assert (counts > 0).all() and (first <= last).all()
    h.release()
    ring.add(0, pages[5])  # nothing held: no copy
    assert not h.saved and not ring._holds and not ring._pins.any()


def test_hold_before_bytes_keeps_the_newest_pages_before_the_trigger_and_all_after():
    ring = PageRing("32K", PAGE)
    data = np.frombuffer(synthetic_pages(0, 1000, 1600), np.uint8)
    ring.add(0, data)
    idx = walk_pages(data, PAGE)
    _, last, _ = page_times(idx)
    n = len(last)
    trig = int(last[n - 4])  # pages n-8 .. n-4 end at or before the trigger, 3 end after it
    h = ring.hold(before_ts=trig, before_bytes=2 * PAGE)
    kept_last = h.times(0)[1]
    assert (kept_last <= trig).sum() == 2 and (kept_last > trig).sum() == 3
    assert kept_last.tolist() == sorted(kept_last.tolist())
    h.release()
