"""hist() and lhist(): buckets, vectorised adds, and bpftrace's / bcc's exact output."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tracewatch.script.histogram import Hist, LHist, hist, lhist


def slot_of(v: float) -> int:
    h = hist()
    h.add(v)
    return h.counts.index(1)


@pytest.mark.parametrize(
    "value, slot",
    [(-5, 0), (-1, 0), (0, 1), (0.5, 1), (1, 2), (1.9, 2), (2, 3), (3, 3), (4, 4), (1023, 11), (1024, 12),
     ((1 << 63) - 1, 64), (1 << 63, 65), ((1 << 64) - 1, 65), (1 << 70, 65)],
)
def test_log2_bucket_of_a_value(value: float, slot: int) -> None:
    assert slot_of(value) == slot


def test_hist_labels_follow_bpftrace() -> None:
    h = hist()
    for v in (-3, 0, 1, 2, 5, 1500, 3 << 20, 1 << 63):
        h.add(v)
    labels = [line[:16].rstrip() for line in h.format().splitlines()]
    assert labels[:5] == ["(..., 0)", "[0]", "[1]", "[2, 4)", "[4, 8)"]
    assert "[1K, 2K)" in labels and "[2M, 4M)" in labels and "[1G, 2G)" in labels
    assert labels[-1] == "[8E, 16E)"
    assert h.buckets()[:3] == [(None, 0, 1), (0, 1, 1), (1, 2, 1)]


# bpftrace's own output (one-liner tutorial lesson 7, `@ns[comm] = hist(nsecs - @start[tid])`)
RUNC = """\
[256, 512)             2 |@@@@@@@@@@@                                         |
[512, 1K)              2 |@@@@@@@@@@@                                         |
[1K, 2K)               0 |                                                    |
[2K, 4K)               3 |@@@@@@@@@@@@@@@@@                                   |
[4K, 8K)               1 |@@@@@                                               |
[8K, 16K)              1 |@@@@@                                               |
[16K, 32K)             6 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@                  |
[32K, 64K)             9 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[64K, 128K)            4 |@@@@@@@@@@@@@@@@@@@@@@@                             |
"""


def test_hist_prints_exactly_like_bpftrace() -> None:
    h = hist()
    for low, n in ((256, 2), (600, 2), (2048, 3), (5000, 1), (9000, 1), (20000, 6), (40000, 9), (100000, 4)):
        h.add(low, n)
    assert h.format() == RUNC
    assert str(h) == RUNC
    out = io.StringIO()
    h.print(file=out)
    assert out.getvalue() == RUNC
    assert h.count == 28


def test_empty_hist_prints_nothing() -> None:
    assert hist().format() == "" and hist().format("bcc") == ""
    assert hist().buckets() == []


# bcc's output (tools/biolatency_example.txt, `biolatency -D`, disk xvdb)
XVDB = """\
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 0        |                                        |
       128 -> 255        : 1        |                                        |
       256 -> 511        : 33       |**********************                  |
       512 -> 1023       : 36       |************************                |
      1024 -> 2047       : 58       |****************************************|
      2048 -> 4095       : 51       |***********************************     |
      4096 -> 8191       : 21       |**************                          |
      8192 -> 16383      : 2        |*                                       |
"""


def test_hist_prints_exactly_like_bcc_print_log2_hist() -> None:
    h = hist()
    for low, n in ((128, 1), (256, 33), (512, 36), (1024, 58), (2048, 51), (4096, 21), (8192, 2)):
        h.add(low, n)
    assert h.format("bcc", val_type="usecs") == XVDB


def test_bcc_style_merges_zero_and_one_and_widens_for_big_values() -> None:
    h = hist()
    h.add(0)
    h.add(1)
    assert h.format("bcc").splitlines()[1].startswith("         0 -> 1          : 2 ")
    h.add(1 << 40)
    lines = h.format("bcc").splitlines()
    assert lines[0] == "               value                         : count     distribution"
    assert lines[-1].endswith(": 1        |**********          |")


def test_add_many_equals_scalar_adds() -> None:
    rng = np.random.default_rng(1)
    ints = np.concatenate(
        [rng.integers(-1000, 1 << 40, 2000), np.array([0, 1, 2, 3, (1 << 53) + 1, (1 << 63) - 1, -(1 << 63)])]
    )
    uints = np.array([0, 1, (1 << 64) - 1, (1 << 63), (1 << 62) - 1, (1 << 32)], dtype=np.uint64)
    floats = np.concatenate([rng.uniform(-10, 1e12, 500), [0.0, 0.25, 1.0, 1.5, 2.0**64, 2.0**70, np.nan]])
    for arr in (ints, uints, floats, np.array([True, False, True])):
        fast, slow = hist(), hist()
        fast.add_many(arr)
        for v in arr.tolist():
            slow.add(v)
        assert fast == slow, arr.dtype


def test_ilshift_and_merge() -> None:
    a, b = hist(), hist()
    a <<= 5
    b <<= 5
    b <<= 100
    a.merge(b)
    assert a.counts[4] == 2 and a.count == 3
    with pytest.raises(ValueError):
        a.merge(lhist(0, 10, 1))
    a.clear()
    assert a.count == 0


# bpftrace's own unit tests (tests/output.cpp): lhist_no_suffix and lhist_suffix
LHIST_NO_SUFFIX = """\
[610000, 620000)       1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[620000, 630000)       1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[630000, 640000)       1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[640000, 650000)       1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[650000, 660000)       1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[660000, 670000)       1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
"""
LHIST_SUFFIX = """\
[0, 1K)                1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[1K, 2K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[2K, 3K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[3K, 4K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[4K, 5K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
"""


def test_lhist_prints_exactly_like_bpftrace() -> None:
    a = lhist(610000, 670000, 10000)
    a.add_many(np.arange(610000, 670000, 10000))
    assert a.format() == LHIST_NO_SUFFIX
    b = lhist(0, 5 * 1024, 1024)
    for v in range(0, 5 * 1024, 1024):
        b.add(v)
    assert b.format() == LHIST_SUFFIX


def test_lhist_edges() -> None:
    h = lhist(0, 100, 10)
    for v in (-1, 0, 9, 10, 99, 100, 1000):
        h.add(v)
    assert h.counts == [1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    lines = h.format().splitlines()
    assert lines[0].startswith("(..., 0) ") and lines[-1].startswith("[100, ...) ")
    assert h.buckets()[0] == (None, 0, 1) and h.buckets()[-1] == (100, None, 2)
    single = lhist(0, 5, 1)
    single.add(3)
    assert single.format().startswith("[3]   ")
    with pytest.raises(ValueError):
        lhist(0, 10, 0)
    with pytest.raises(TypeError):
        lhist(0.5, 10, 1)  # type: ignore[arg-type]


def test_lhist_add_many_equals_scalar_adds() -> None:
    rng = np.random.default_rng(2)
    for lo, hi, step in ((0, 100, 10), (-50, 50, 7), (1000, 5000, 1000)):
        vals = [rng.integers(-200, 6000, 300), rng.uniform(-200, 6000, 300),
                np.array([0, 5, (1 << 64) - 1], dtype=np.uint64), np.array([np.nan, lo, hi, hi - 1])]
        for arr in vals:
            fast, slow = lhist(lo, hi, step), lhist(lo, hi, step)
            fast.add_many(arr)
            for v in arr.tolist():
                slow.add(v)
            assert fast == slow


def test_lhist_bcc_style() -> None:
    h = lhist(0, 40, 10)
    h.add(5, 4)
    h.add(25, 2)
    assert h.format("bcc", "ms") == (
        "     ms            : count     distribution\n"
        "        0             : 4        |****************************************|\n"
        "        10            : 0        |                                        |\n"
        "        20            : 2        |********************                    |\n"
    )


def test_classes_and_factories() -> None:
    assert isinstance(hist(), Hist) and isinstance(lhist(0, 2, 1), LHist)
    with pytest.raises(ValueError):
        hist().format("gnuplot")
