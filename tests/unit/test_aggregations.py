"""Map: autovivification, leaves, ordering, batch fast paths and printed output."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tracewatch.script.aggregations import Avg, Count, Map, Stats, avg, count, stats
from tracewatch.script.histogram import hist, lhist


def printed(m: Map, **kw: object) -> str:
    out = io.StringIO()
    m.print(file=out, **kw)  # type: ignore[arg-type]
    return out.getvalue()


def test_nested_levels_are_created_on_first_use() -> None:
    calls = Map(int)
    calls["bash"][1] += 1
    calls["bash"][1] += 41
    calls["bash", 3] += 2  # a tuple key is the same path
    calls["sshd"][0] += 7
    assert calls["bash", 1] == 42 and calls["bash"][3] == 2
    assert len(calls) == 3 and calls.depth == 2
    assert calls.items() == [(("bash", 1), 42), (("bash", 3), 2), (("sshd", 0), 7)]
    assert list(calls) == [("bash", 1), ("bash", 3), ("sshd", 0)]
    assert calls.to_dict() == {"bash": {1: 42, 3: 2}, "sshd": {0: 7}}
    assert "bash" in calls and ("bash", 3) in calls and ("bash", 9) not in calls and "zsh" not in calls


def test_reading_a_missing_counter_does_not_create_it() -> None:
    m = Map(int)
    m["a"] += 1
    assert m["b"] == 0 and len(m) == 1
    assert m.get("b") is None and m.get("a") == 1


def test_depth_is_fixed_by_the_first_entry() -> None:
    m = Map(int)
    m["a", 1] += 1
    with pytest.raises(KeyError):
        m["b"] = 1
    with pytest.raises(KeyError):
        m["a", 1, 2]
    with pytest.raises(TypeError):
        m["a"] += 1


def test_views_have_the_map_methods() -> None:
    m = Map(int, name="calls")
    m["bash", 1] += 3
    m["bash", 2] += 5
    m["sshd", 1] += 1
    v = m["bash"]
    assert len(v) == 2 and v.items() == [((1,), 3), ((2,), 5)] and v.depth == 1
    assert v.top(1) == [((2,), 5)]
    assert printed(v) == "@calls[bash, 1]: 3\n@calls[bash, 2]: 5\n"
    v.clear()
    assert m.items() == [(("sshd", 1), 1)]


def test_delete_and_clear() -> None:
    m = Map(int)
    m["a", 1] = 1
    m["a", 2] = 2
    m["b", 1] = 3
    del m["a", 1]
    assert len(m) == 2
    del m["a"]
    assert m.keys() == [("b", 1)]
    with pytest.raises(KeyError):
        del m["zzz"]
    m.clear()
    assert len(m) == 0 and not m
    m["x"] += 1  # a cleared map may take a new shape
    assert m.items() == [(("x",), 1)]


def test_aggregating_leaves() -> None:
    c, s, lo, hi, a, st = Map(count), Map(sum), Map(min), Map(max), Map(avg), Map(stats)
    for v in (3, 1, 8):
        c["k"].add()
        s["k"].add(v)
        lo["k"] <<= v
        hi["k"] <<= v
        a["k"].add(v)
        st["k"] <<= v
    c["k"] += 10
    assert c["k"] == 13 and isinstance(c["k"], Count)
    assert s["k"].value == 12 and lo["k"].value == 1 and hi["k"].value == 8
    assert a["k"].value == 4.0 and isinstance(a["k"], Avg)
    assert isinstance(st["k"], Stats)
    assert st["k"].value == {"count": 3, "sum": 12, "min": 1, "max": 8, "avg": 4.0}
    assert st.to_dict() == {"k": {"count": 3, "sum": 12, "min": 1, "max": 8, "avg": 4.0}}
    assert Map(min)["x"].value is None  # no value yet


def test_nested_aggregate_autovivifies() -> None:
    st = Map(stats)
    st["bash"][0].add(5)
    st["bash"][0] <<= 7
    assert st.items()[0][0] == ("bash", 0) and st["bash", 0].count == 2


def test_float_and_generic_leaves() -> None:
    f = Map(float)
    f["a"] += 0.5
    assert f["a"] == 0.5 and f["b"] == 0.0
    lists = Map(list)
    lists["a"].append(1)
    lists["a"].append(2)
    assert lists.to_dict() == {"a": [1, 2]}
    with pytest.raises(TypeError):
        Map(lhist)
    with pytest.raises(TypeError):
        Map(42)


def test_histogram_leaves_are_independent() -> None:
    h = Map(lhist(0, 100, 10))
    h["a"].add(5)
    h["b"].add(95)
    assert h["a"].counts[1] == 1 and h["b"].counts[1] == 0
    per = Map(hist)
    per["x"].add(1)
    assert per["x"].count == 1


def test_top_sorted_and_sort_values() -> None:
    m = Map(int)
    for k, v in (("a", 5), ("b", 50), ("c", 1), ("d", 20)):
        m[k] = v
    assert m.top(2) == [(("b",), 50), (("d",), 20)]
    assert [k for k, _ in m.sorted()] == [("c",), ("a",), ("d",), ("b",)]
    assert [k for k, _ in m.sorted(by="key", reverse=True)][0] == ("d",)
    st = Map(stats)
    st["many_short"].add(1)
    st["many_short"].add(1)
    st["few_long"].add(100)
    assert st.top(1)[0][0] == ("few_long",)  # stats rank by sum
    assert st.top(1, key=lambda s: s.count)[0][0] == ("many_short",)


# ---------------------------------------------------------------- printing


def test_print_like_bpftrace_smallest_first() -> None:
    calls = Map(int, name="calls")
    calls["bash", 1] += 42
    calls["sshd", 0] += 7
    calls["cron", 3] += 100
    assert printed(calls) == "@calls[sshd, 0]: 7\n@calls[bash, 1]: 42\n@calls[cron, 3]: 100\n"
    assert printed(calls, top=2) == "@calls[bash, 1]: 42\n@calls[cron, 3]: 100\n"
    assert printed(calls, top=2, title="Top syscalls:").startswith("Top syscalls:\n@calls[bash, 1]: 42\n")
    anon = Map(count)
    anon[b"ls"].add()
    assert printed(anon) == "@[ls]: 1\n"


@pytest.mark.parametrize("style", ["bpftrace", "table"])
def test_print_top_more_than_there_are_prints_them_all(style) -> None:
    # the README's example: calls.print(top=10) over a map of three entries
    calls = Map(int, name="calls")
    calls["bash", 1] += 42
    calls["sshd", 0] += 7
    calls["cron", 3] += 100
    everything = printed(calls, style=style)
    assert everything.count("\n") == 3
    for top in (3, 4, 10, 1000):
        assert printed(calls, top=top, style=style) == everything
    assert printed(calls, top=0, style=style) == ""
    assert printed(calls, top=1, style=style).count("\n") == 1
    assert "100" in printed(calls, top=1, style=style)
    view = Map(int)
    view["a", 1] += 1
    view["a", 2] += 2
    view["b", 1] += 5
    assert printed(view["a"], top=5) == "@[a, 1]: 1\n@[a, 2]: 2\n"
    hists = Map(hist, name="h")
    hists["x"].add(3)
    assert printed(hists, top=7) == printed(hists)


def test_print_aggregates_like_bpftrace() -> None:
    a = Map(avg, name="a")
    for v in (1, 2):
        a["x"].add(v)  # bpftrace prints the integer average
    st = Map(stats, name="s")
    for v in (1, 2, 3):
        st["x"].add(v)
    mx = Map(max)
    mx["y"].add(2.5)
    assert printed(a) == "@a[x]: 1\n"
    assert printed(st) == "@s[x]: count 3, average 2, total 6, min 1, max 3\n"
    assert printed(mx) == "@[y]: 2.5\n"


# bpftrace's output (one-liner tutorial lesson 7: @ns[comm] = hist(nsecs - @start[tid]))
NS_BY_COMM = """\
@ns[systemd]:
[2K, 4K)               6 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[4K, 8K)               6 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[8K, 16K)              1 |@@@@@@@@                                            |

@ns[iptables]:
[512, 1K)              2 |@@@@@@@@@                                           |
[1K, 2K)              11 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[2K, 4K)               3 |@@@@@@@@@@@@@@                                      |

"""


def test_hist_map_prints_like_bpftrace() -> None:
    ns = Map(hist, name="ns")
    for comm, v, n in (("iptables", 600, 2), ("systemd", 3000, 6), ("iptables", 1500, 11),
                       ("systemd", 5000, 6), ("iptables", 3000, 3), ("systemd", 9000, 1)):
        ns[comm].add(v, n)
    assert printed(ns) == NS_BY_COMM


def test_print_as_table() -> None:
    calls = Map(int)
    calls["bash", 1] += 42
    calls["sshd", 10] += 7
    assert printed(calls, style="table", headers=("COMM", "SYSCALL", "COUNT")) == (
        "COMM  SYSCALL  COUNT\n"
        "bash        1     42\n"
        "sshd       10      7\n"
    )
    assert printed(calls, style="table") == "bash   1  42\nsshd  10   7\n"
    with pytest.raises(ValueError):
        printed(calls, style="table", headers=("A",))
    with pytest.raises(ValueError):
        printed(calls, style="xml")


def test_hist_map_as_table_uses_bcc_sections() -> None:
    lat = Map(hist)
    lat["sda"].add(3)
    text = printed(lat, style="table", headers=("disk",), val_type="usecs")
    assert text.startswith("\ndisk = sda\n     usecs               : count     distribution\n")


# ---------------------------------------------------------------- batches


def test_add_counts_matches_a_python_loop() -> None:
    rng = np.random.default_rng(3)
    comm = rng.choice(np.array([b"bash", b"sshd", b"cron"]), 5000)
    sysid = rng.integers(0, 20, 5000)
    fast, slow = Map(int), Map(int)
    fast.add_counts((comm, sysid))
    for c, s in zip(comm.tolist(), sysid.tolist()):
        slow[c.decode(), s] += 1
    assert sorted(fast.items()) == sorted(slow.items())
    fast.add_counts((comm[:10], sysid[:10]))  # adds to what is there
    assert sum(v for _, v in fast.items()) == 5010


@pytest.mark.parametrize("dtypes", [("int32", "int64"), ("uint16", "int8", "uint64"), ("int64",),
                                    ("uint64", "int32")])
def test_add_counts_of_integer_keys_matches_a_python_loop(dtypes) -> None:
    # small ranges (counted) and wide ones (sorted), negative values, unsigned dtypes
    rng = np.random.default_rng(len(dtypes))
    for lo, hi in ((-50, 50), (0, 3), (-(1 << 40), 1 << 40)):
        levels = []
        for dt in dtypes:
            info = np.iinfo(dt)
            a, b = max(lo, info.min), min(hi, info.max)
            levels.append(rng.integers(a, b, 3000, endpoint=True).astype(dt))
        fast, slow = Map(int), Map(int)
        fast.add_counts(tuple(levels) if len(levels) > 1 else levels[0])
        for row in zip(*(lv.tolist() for lv in levels)):
            slow[row if len(row) > 1 else row[0]] += 1
        assert sorted(fast.items()) == sorted(slow.items()), (dtypes, lo, hi)


def test_add_counts_with_counts_and_count_leaves() -> None:
    keys, counts = np.unique(np.array([5, 5, 7, 9, 9, 9]), return_counts=True)
    m = Map(count, name="c")
    m.add_counts(keys, counts)
    m.add_counts(np.array([7]))
    assert [(k, v.value) for k, v in m.items()] == [((5,), 2), ((7,), 2), ((9,), 3)]
    f = Map(float)
    f.add_counts(np.array(["a", "b", "a"]), np.array([0.5, 1.0, 0.25]))
    assert f.to_dict() == {"a": 0.75, "b": 1.0}
    with pytest.raises(TypeError):
        Map(stats).add_counts(keys)
    with pytest.raises(ValueError):
        Map(int).add_counts(keys, np.array([1]))
    Map(int).add_counts(np.array([], np.int64))  # nothing to do


@pytest.mark.parametrize("leaf", [int, float, count, sum, min, max, avg, stats, hist, lhist(0, 1000, 100), list])
def test_update_from_arrays_matches_a_python_loop(leaf: object) -> None:
    rng = np.random.default_rng(4)
    pid = rng.integers(1, 6, 3000)
    cpu = rng.integers(0, 3, 3000)
    vals = rng.integers(0, 5000, 3000)
    if leaf is float:
        vals = vals / 7
    fast, slow = Map(leaf), Map(leaf)
    fast.update_from_arrays((pid, cpu), vals)
    for p, c, v in zip(pid.tolist(), cpu.tolist(), vals.tolist()):
        if leaf in (int, float):
            slow[p, c] += v
        elif leaf is list:
            slow[p, c].append(v)
        else:
            slow[p, c].add(v)
    got, want = dict(fast.items()), dict(slow.items())
    assert got.keys() == want.keys()
    for k in want:
        if leaf is float:
            assert got[k] == pytest.approx(want[k])
        elif leaf is avg:
            assert got[k].value == pytest.approx(want[k].value)
        else:
            assert got[k] == want[k], k
