"""Ring-buffer page walking: synthetic pages with every header kind, and real pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES
from tracewatch.formats.ring_page import PageIndex, walk_pages
from tracewatch.testing import PageBuilder, make_payload

RAW_PAGES = FIXTURES / "raw-pages"
needs_fixtures = pytest.mark.skipif(not RAW_PAGES.is_dir(), reason="shared fixtures not present")


def found(idx: PageIndex, buf: bytes) -> list[tuple[int, bytes, int]]:
    """(ts, record bytes, page) of every event a walk found."""
    return [(int(t), buf[o : o + n], int(o) // idx.page_size)
            for t, o, n in zip(idx.ts, idx.offset, idx.length)]


def expected(b: PageBuilder) -> list[tuple[int, bytes, int]]:
    return [(e.ts, e.payload, e.page) for e in b.expected]


def check_walk(b: PageBuilder) -> PageIndex:
    data = b.build()
    idx = walk_pages(np.frombuffer(data, np.uint8), b.page_size, commit_size=b.commit_size, little=b.little)
    assert found(idx, data) == expected(b)
    assert idx.type_id.tolist() == [
        int.from_bytes(e.payload[:2], "little" if b.little else "big") for e in b.expected]
    assert idx.damage == []
    return idx


def every_header_kind(b: PageBuilder) -> None:
    b.begin_page(1_000_000)
    b.event(make_payload(7, 8), delta=0)                    # type_len 2
    b.event(make_payload(8, 112), delta=3)                  # type_len 28, the largest short form
    b.event(make_payload(9, 116), delta=4)                  # type_len 0 with a length word
    b.event(make_payload(10, 16), delta=5, long_form=True)  # length word for a small record
    b.event(make_payload(11, 6), delta=1)                   # rounded up to 8
    b.time_extend((1 << 27) + 12345)                        # RINGBUF_TYPE_TIME_EXTEND
    b.event(make_payload(12, 4), delta=2)
    b.padding(24, delta=7)                                  # a discarded event: its delta counts
    b.event(make_payload(13, 12), delta=1)
    b.absolute(5_000_000_000)                               # RINGBUF_TYPE_TIME_STAMP
    b.event(make_payload(14, 8), delta=0)
    b.event(make_payload(15, 8), delta=(1 << 27) - 1)       # the largest delta without an extend
    b.null_padding()                                        # end of data before the commit


@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("commit_size", [8, 4])
@pytest.mark.parametrize("page_size", [4096, 8192, 1024])
def test_every_header_kind(little: bool, commit_size: int, page_size: int) -> None:
    b = PageBuilder(page_size, commit_size=commit_size, little=little)
    every_header_kind(b)
    idx = check_walk(b)
    assert idx.ts[0] == 1_000_000
    assert idx.ts[-2] == 5_000_000_000
    assert idx.page_missed.tolist() == [0]


def test_absolute_stamp_keeps_top_bits_of_running_time() -> None:
    b = PageBuilder()
    top = 0x18 << 56
    b.begin_page(top + 10)
    b.event(make_payload(1, 8))
    b.absolute(12345)  # stored without the top 5 bits, which come from the running time
    b.event(make_payload(1, 8), delta=2)
    idx = check_walk(b)
    assert idx.ts.tolist() == [top + 10, top + 12347]


@pytest.mark.parametrize("commit_size", [8, 4])
@pytest.mark.parametrize("little", [True, False])
def test_missed_events(commit_size: int, little: bool) -> None:
    b = PageBuilder(commit_size=commit_size, little=little)
    b.begin_page(100)
    b.event(make_payload(1, 8))
    b.begin_page(200, missed=-1)  # RB_MISSED_EVENTS only: the count was not stored
    b.event(make_payload(2, 8))
    b.event(make_payload(2, 8), delta=1)
    b.begin_page(300, missed=42)  # RB_MISSED_STORED: the count follows the data
    b.time_extend(1 << 28)        # first data event is not first on the page: still gets the count
    b.event(make_payload(3, 8))
    b.begin_page(400, missed=-1)  # lost events, then an empty page
    b.begin_page(500, missed=7)
    b.event(make_payload(4, 8))
    idx = check_walk(b)
    assert idx.page_missed.tolist() == [0, -1, 42, -1, 7]
    assert idx.page_first.tolist() == [0, 1, 3, 4, 4]
    assert idx.missed_before.tolist() == [0, -1, 0, 42, 7]


def test_add_splits_pages_and_extends_time() -> None:
    b = PageBuilder(page_size=256)
    ts = 10
    for i in range(200):
        ts += [1, 1 << 27, 1 << 40, 5][i % 4]
        b.add(ts, make_payload(i % 500, 4 + (i % 9) * 4), long_form=i % 7 == 0, absolute=i % 11 == 0)
    b.add(ts - 1000, make_payload(1, 8))  # time going backwards: absolute stamp
    idx = check_walk(b)
    assert len(b.pages) > 10
    assert idx.ts[-1] == ts - 1000


def test_bytes_after_commit_are_never_read() -> None:
    # junk after the commit looks like events; a walk that reads it finds more than we put in
    for junk in (0x01, 0x20, 0xFF, 0x00):
        b = PageBuilder(junk=junk)
        b.begin_page(1)
        b.event(make_payload(5, 12))
        check_walk(b)


def test_trailing_partial_page_is_not_walked() -> None:
    b = PageBuilder()
    b.begin_page(1)
    b.event(make_payload(5, 12))
    data = b.build() + b"\x01" * 100
    idx = walk_pages(data, 4096)
    assert len(idx) == 1 and idx.trailing_bytes == 100


def test_empty_buffer() -> None:
    idx = walk_pages(b"", 4096)
    assert len(idx) == 0 and idx.damage == [] and len(idx.page_missed) == 0


def _page_with(words: list[int], commit: int, page_size: int = 4096) -> bytes:
    body = b"".join(w.to_bytes(4, "little") for w in words)
    page = (1000).to_bytes(8, "little") + commit.to_bytes(8, "little") + body
    return page + bytes(page_size - len(page))


def good_page() -> bytes:
    b = PageBuilder()
    b.begin_page(50)
    b.event(make_payload(3, 8))
    b.event(make_payload(3, 8), delta=1)
    return b.build()


def test_damage_commit_larger_than_page() -> None:
    bad = _page_with([], 5000)
    idx = walk_pages(good_page() + bad + good_page(), 4096)
    assert len(idx) == 4  # the pages around it are still walked
    (d,) = idx.damage
    assert d.page == 1 and d.offset == 8 and "commit" in d.message


def test_damage_event_runs_past_commit() -> None:
    hdr = (0 << 5) | 4  # type_len 4: 16 bytes of data, but the commit ends after 12
    bad = _page_with([hdr, 0x0003, 0, 0, 0], 12)
    idx = walk_pages(good_page() + bad, 4096)
    assert len(idx) == 2
    (d,) = idx.damage
    assert (d.page, d.offset) == (1, 16)
    assert "runs past commit" in d.message


def test_damage_after_good_events_keeps_them() -> None:
    ok = (2 << 0) | (1 << 5)  # type_len 2, delta 1
    bad_len = 0  # type_len 0 with a length word of 0 (kbuffer would loop on it)
    bad = _page_with([ok, 0x0009, 0, bad_len, 0], 20)
    idx = walk_pages(bad, 4096)
    assert idx.type_id.tolist() == [9] and idx.ts.tolist() == [1001]
    (d,) = idx.damage
    assert d.offset == 16 + 12 and "length" in d.message


def test_damage_extend_cut_by_commit() -> None:
    bad = _page_with([30], 4)  # a time extend needs 8 bytes
    idx = walk_pages(bad, 4096)
    assert len(idx) == 0 and idx.damage[0].offset == 16


def test_padding_runs_to_page_end_without_damage() -> None:
    # a padding whose length reaches the end of the commit is normal
    pad = 29 | (1 << 5)
    bad = _page_with([pad, 4080 - 4], 4080)
    idx = walk_pages(bad, 4096)
    assert len(idx) == 0 and idx.damage == []


@st.composite
def page_scripts(draw):  # noqa: ANN001, ANN201
    """A random sequence of page-builder steps."""
    page_size = draw(st.sampled_from([128, 256, 4096, 8192]))
    little = draw(st.booleans())
    commit_size = draw(st.sampled_from([8, 4]))
    steps = draw(st.lists(
        st.tuples(
            st.sampled_from(["event", "event", "event", "long", "extend", "abs", "pad", "page", "missed"]),
            st.integers(0, (1 << 27) - 1),
            st.integers(1, 80),
            st.integers(0, 0xFFFF),
        ),
        min_size=1, max_size=60))
    return page_size, little, commit_size, steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_scripts())
def test_walk_finds_exactly_what_was_built(script) -> None:  # noqa: ANN001
    page_size, little, commit_size, steps = script
    b = PageBuilder(page_size, commit_size=commit_size, little=little)
    b.begin_page(1 << 20)
    max_words = (page_size - 16 - 8 - 8) // 4
    for kind, delta, words, type_id in steps:
        words = min(words, max_words)
        size = 4 * words
        need = {"event": 4 + size + (4 if size > 112 else 0), "long": 8 + size, "extend": 8, "abs": 8,
                "pad": 12, "page": 0, "missed": 0}[kind]
        if kind in ("page", "missed") or b.room < need + commit_size:
            missed = 0 if kind != "missed" else (-1 if delta % 2 else 1 + delta % 1000)
            b.begin_page(b.now + delta, missed=missed)
            if kind in ("page", "missed"):
                continue
        payload = make_payload(type_id, size, fill=delta, little=little)
        if kind == "event":
            b.event(payload, delta)
        elif kind == "long":
            b.event(payload, delta, long_form=True)
        elif kind == "extend":
            b.time_extend(delta << 5)
        elif kind == "abs":
            b.absolute((delta << 20) + 7)
        elif kind == "pad":
            b.padding(12, max(delta, 1))
    check_walk(b)


_SUBPROCESS_CASE = r"""
import json, numpy as np
from tracewatch.formats.ring_page import walk_pages
from tracewatch.testing import PageBuilder, make_payload
out = {}
for little in (True, False):
    b = PageBuilder(512, little=little)
    b.begin_page(77, missed=3)
    for i in range(40):
        b.add(100 + i * (1 << 26), make_payload(i, 4 + 4 * (i % 30)), long_form=i % 5 == 0)
    b.pages[-1].body += b"\x00" * 0  # unchanged
    data = bytearray(b.build())
    data[512 + 8] = 0xff  # page 1: commit far past the page
    idx = walk_pages(np.frombuffer(bytes(data), np.uint8), 512, little=little)
    out[str(little)] = [idx.ts.tolist(), idx.offset.tolist(), idx.length.tolist(), idx.type_id.tolist(),
                        idx.page_missed.tolist(), [(d.page, d.offset, d.message) for d in idx.damage]]
print(json.dumps(out))
"""


def _run_case(disable_jit: bool) -> dict:
    env = dict(os.environ)
    env["NUMBA_DISABLE_JIT"] = "1" if disable_jit else "0"
    res = subprocess.run([sys.executable, "-c", _SUBPROCESS_CASE], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(res.stdout)


def test_plain_python_walk_matches_compiled() -> None:
    """The numba loop must also run as plain Python (NUMBA_DISABLE_JIT=1) with the same results."""
    plain = _run_case(True)
    compiled = _run_case(False)
    assert plain == compiled
    assert len(plain["True"][0]) > 10 and plain["True"][5]  # it did find events and the damage


@needs_fixtures
def test_raw_pages_per_type_counts() -> None:
    """cpu0.raw / cpu1.raw as read from trace_pipe_raw: counts from the MANIFEST."""
    ids = {}
    for fmt in (RAW_PAGES / "events").glob("*/*/format"):
        text = fmt.read_text()
        name = text.split("name:")[1].split()[0]
        ids[int(text.split("ID:")[1].split()[0])] = name
    want = {
        0: dict(sys_enter=621, sys_exit=622, sched_switch=15, sched_wakeup=6, sched_process_fork=5,
                sched_process_exec=3, sched_process_exit=2, print=2),
        1: dict(sys_enter=659, sys_exit=658, sched_switch=5, sched_wakeup=3, sched_process_exec=5,
                sched_process_exit=3),
    }
    for cpu in (0, 1):
        data = np.fromfile(RAW_PAGES / f"cpu{cpu}.raw", np.uint8)
        idx = walk_pages(data, 4096)
        assert idx.damage == [] and idx.trailing_bytes == 0
        assert dict(Counter(ids[t] for t in idx.type_id.tolist())) == want[cpu]
        assert np.all(np.diff(idx.ts.astype(np.int64)) >= 0)
        assert idx.page_missed.tolist() == [0] * 16


@needs_fixtures
def test_walk_buffers_equals_walk_pages_per_buffer() -> None:
    """All CPUs walked into one set of arrays: each CPU's slice is its own walk, damage and all."""
    from tracewatch.formats.ring_page import walk_buffers

    bad = bytearray(np.fromfile(RAW_PAGES / "cpu1.raw", np.uint8)[: 3 * 4096].tobytes())
    bad[4096 + 8 : 4096 + 16] = (4000).to_bytes(8, "little")  # commit larger than the page
    bufs = [np.fromfile(RAW_PAGES / "cpu0.raw", np.uint8), np.zeros(0, np.uint8),
            np.frombuffer(bytes(bad) + b"\0" * 100, np.uint8)]
    indexes, every = walk_buffers(bufs, 4096)
    assert [len(a) for a in every] == [sum(len(i) for i in indexes)] * 4
    start = 0
    for buf, got in zip(bufs, indexes):
        want = walk_pages(buf, 4096)
        for name in ("ts", "offset", "length", "type_id", "page_ts", "page_commit", "page_missed", "page_first"):
            assert getattr(got, name).tolist() == getattr(want, name).tolist(), name
        assert got.damage == want.damage and got.trailing_bytes == want.trailing_bytes
        assert every[0][start : start + len(got)].tolist() == got.ts.tolist()
        start += len(got)
    assert indexes[2].damage and indexes[2].trailing_bytes == 100


def test_walk_grows_its_output_more_than_once():
    """The first pages are sparse, the rest dense: the output arrays must grow repeatedly."""
    from tracewatch.formats.ring_page import walk_buffers
    from tracewatch.testing import PageBuilder, make_payload

    b = PageBuilder(4096)
    for i in range(80):  # sparse pages: one big event each
        b.begin_page(1000 * (i + 1))
        b.event(make_payload(7, 2000), delta=1)
    for i in range(400):  # dense pages: as many tiny events as fit
        b.begin_page(10_000_000 + 1000 * i)
        while b.room >= 16:
            b.event(make_payload(8, 8), delta=1)
    data = np.frombuffer(b.build(), dtype=np.uint8)
    (idx,), _every = walk_buffers([data], 4096)
    assert len(idx) == len(b.expected) > 80 * 2
    assert np.array_equal(idx.type_id, np.array([e.payload[0] for e in b.expected], dtype=np.uint16))
