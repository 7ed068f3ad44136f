"""`tracewatch run` over trace.dat files: handlers, filters, timers, errors, examples."""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, fixture_path
from tracewatch.tools import run

RAW_LINE = re.compile(r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>[\d.]+): (?P<event>\w+):\s+(?P<rest>.*)$")


def raw_events(name: str, event: str) -> list[dict[str, str]]:
    """Events of one type from trace-cmd's stored `report -R` text: an independent oracle."""
    out = []
    for line in fixture_path(name + ".raw.txt").read_text(errors="replace").splitlines():
        m = RAW_LINE.match(line)
        if m and m.group("event") == event:
            d = dict(kv.split("=", 1) for kv in m.group("rest").split() if "=" in kv)
            d.update(pid=m.group("pid"), cpu=m.group("cpu"), ts=m.group("ts"))
            out.append(d)
    return out


def script(tmp_path: Path, body: str) -> str:
    p = tmp_path / "s.py"
    p.write_text(textwrap.dedent(body))
    return str(p)


def run_script(capsys, path: str, trace: str, *extra: str) -> tuple[int, str, str]:
    rc = run.main([path, "-i", str(fixture_path(trace)), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_per_event_and_batch_handlers_see_every_event(tmp_path, capsys):
    s = script(tmp_path, """
        from collections import Counter
        from tracewatch import on, on_batch, at_end
        per_event, batch = Counter(), Counter()
        @on("raw_syscalls:sys_enter")
        def enter(ev):
            per_event[ev.id] += 1
        @on_batch("sys_enter")
        def enter_b(b):
            batch.update(b.id.tolist())
        @at_end
        def end():
            print(sorted(per_event.items()))
            print(sorted(batch.items()))
    """)
    rc, out, err = run_script(capsys, s, "a_syscalls.v6.dat")
    assert rc == 0, err
    want = sorted(Counter(int(e["id"]) for e in raw_events("a_syscalls.v6.dat", "sys_enter")).items())
    lines = out.splitlines()
    assert lines[0] == str(want) and lines[1] == str(want)


def test_where_filter_matches_independent_count(tmp_path, capsys):
    s = script(tmp_path, """
        from tracewatch import on, at_end
        n = [0]
        @on("raw_syscalls:sys_exit", where="ret < 0 && common_pid != 0")
        def failed(ev):
            assert ev.ret < 0
            n[0] += 1
        @at_end
        def end():
            print(n[0])
    """)
    rc, out, err = run_script(capsys, s, "a_syscalls.v6.dat")
    assert rc == 0, err
    want = sum(1 for e in raw_events("a_syscalls.v6.dat", "sys_exit") if int(e["ret"]) < 0 and e["pid"] != "0")
    assert int(out.strip()) == want and want > 0


def test_events_of_all_types_arrive_in_time_order(tmp_path, capsys):
    s = script(tmp_path, """
        from tracewatch import on, at_end
        seen = []
        @on("sched:*")
        def any_sched(ev):
            seen.append((ev.common_ts, ev.name_, ev.common_cpu))
        @on("sched:sched_switch", where="prev_pid != 0")
        def sw(ev):
            seen.append((ev.common_ts, "again", ev.common_cpu))
        @at_end
        def end():
            ts = [t for t, _, _ in seen]
            print(len(seen), ts == sorted(ts))
    """)
    rc, out, err = run_script(capsys, s, "b_sched.v6.dat")
    assert rc == 0, err
    again = sum(1 for e in raw_events("b_sched.v6.dat", "sched_switch") if e["prev_pid"] != "0")
    assert out.split() == [str(2309 + again), "True"]


def test_timers_fire_on_trace_time(tmp_path, capsys):
    s = script(tmp_path, """
        from tracewatch import on, every, at_end
        state = {"first": None, "last": None, "fires": []}
        @on("*")
        def ev(e):
            if state["first"] is None:
                state["first"] = e.common_ts
            state["last"] = e.common_ts
        @every("5ms")
        def tick():
            state["fires"].append(state["last"])
        @at_end
        def end():
            print(state["first"], state["last"], " ".join(map(str, state["fires"])))
    """)
    rc, out, err = run_script(capsys, s, "b_sched.v6.dat")
    assert rc == 0, err
    first, last, *fires = map(int, out.split())
    interval = 5_000_000
    assert len(fires) == (last - first) // interval
    for k, seen_last in enumerate(fires, start=1):
        assert seen_last < first + k * interval  # a timer sees only the events before its deadline


def test_handler_error_stop_names_script_line_and_runs_end_hooks(tmp_path, capsys):
    s = script(tmp_path, """
        from tracewatch import on, at_end
        n = [0]
        @on("sched:sched_switch")
        def sw(ev):
            n[0] += 1
            if n[0] == 3:
                raise ValueError("boom")
        @at_end
        def end():
            print("partial", n[0])
    """)
    rc, out, err = run_script(capsys, s, "b_sched.v6.dat")
    assert rc == 2
    assert "partial 3" in out
    assert f"{s}:8: ValueError: boom" in err and "event:" in err and "sched_switch:" in err
    assert "tracewatch/" not in err.split("event:")[0].split("raised")[1]  # only the user's frames


def test_handler_error_skip_goes_on(tmp_path, capsys):
    s = script(tmp_path, """
        from tracewatch import on, at_end
        n = [0]
        @on("sched:sched_switch")
        def sw(ev):
            n[0] += 1
            if n[0] % 100 == 0:
                raise KeyError(n[0])
        @at_end
        def end():
            print(n[0])
    """)
    rc, out, err = run_script(capsys, s, "b_sched.v6.dat", "--on-error=skip")
    assert rc == 0
    assert out.strip() == "1172"
    assert "11 handler error(s) skipped" in err


def test_bad_filter_is_one_line_with_column(tmp_path, capsys):
    s = script(tmp_path, """
        from tracewatch import on
        @on("raw_syscalls:sys_exit", where="rett < 0")
        def f(ev):
            pass
    """)
    rc, out, err = run_script(capsys, s, "a_syscalls.v6.dat")
    assert rc == 2 and err.count("\n") == 1
    assert "column 1" in err and "did you mean 'ret'" in err


def test_script_syntax_error_names_line(tmp_path, capsys):
    s = script(tmp_path, "x = 1\ndef f(:\n")
    rc, out, err = run_script(capsys, s, "a_syscalls.v6.dat")
    assert rc == 2 and f"{s}:2: SyntaxError" in err and "Traceback" not in err


def test_script_arguments_reach_sys_argv(tmp_path, capsys):
    s = script(tmp_path, """
        import sys
        print(sys.argv[1:])
    """)
    rc, out, err = run_script(capsys, s, "a_syscalls.v6.dat", "--", "bash", "-x")
    assert rc == 0 and out.strip() == "['bash', '-x']"


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.py")))
def test_examples_run(capsys, example):
    rc = run.main([str(REPO / "examples" / example), "-i", str(fixture_path("a_syscalls.v6.dat"))])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.strip()


def test_count_examples_agree(capsys):
    outs = []
    for name in ("syscall_count.py", "syscall_count_batch.py"):
        assert run.main([str(REPO / "examples" / name), "-i", str(fixture_path("a_syscalls.v6.dat"))]) == 0
        outs.append(sorted(capsys.readouterr().out.splitlines()))
    assert outs[0] == outs[1]


# -- the two ways per-event handlers are called across types: long runs of one handler,
#    and handlers alternating event by event; errors in the middle of each --------------------

ORDER_SCRIPT = """
    import sys
    from tracewatch import on, at_end
    from tracewatch.stream.dispatch import current_trace_time
    seen = []
    n = [0]
    def record(tag, ev):
        n[0] += 1
        if current_trace_time() != ev.common_ts:  # what dump() without an event uses
            raise AssertionError("trace time %r != %r" % (current_trace_time(), ev.common_ts))
        if n[0] % 997 == 0:
            raise RuntimeError("every 997th")
        seen.append((ev.common_ts, tag))
    @on("raw_syscalls:sys_enter")
    def enter(ev):
        record("enter", ev)
    @on("raw_syscalls:sys_exit", where=sys.argv[1])
    def exit_(ev):
        record("exit", ev)
    @at_end
    def end():
        print(len(seen), n[0])
        print(" ".join("%d:%s" % s for s in seen))
"""


@pytest.mark.parametrize("exit_filter", ["ret < 0 && ret != -61", "ret >= -1000000"], ids=["long runs", "alternating"])
def test_per_event_handlers_across_types_keep_time_order_and_skip_only_the_failing_event(
        tmp_path, capsys, exit_filter):
    s = script(tmp_path, ORDER_SCRIPT)
    rc, out, err = run_script(capsys, s, "a_syscalls.v6.dat", "--on-error=skip", "--", exit_filter)
    assert rc == 0, err
    assert "AssertionError" not in err
    # the oracle: trace-cmd's -R text, in its order (ties keep the file's order)
    want = []
    for line in fixture_path("a_syscalls.v6.dat.raw.txt").read_text(errors="replace").splitlines():
        m = RAW_LINE.match(line)
        if not m or m.group("event") not in ("sys_enter", "sys_exit"):
            continue
        if m.group("event") == "sys_exit":
            ret = int(dict(kv.split("=", 1) for kv in m.group("rest").split() if "=" in kv)["ret"])
            if not (ret < 0 and ret != -61 if exit_filter.startswith("ret < 0") else ret >= -1000000):
                continue
        sec, usec = m.group("ts").split(".")
        want.append((int(sec) * 1_000_000 + int(usec), "enter" if m.group("event") == "sys_enter" else "exit"))
    skipped = [w for i, w in enumerate(want, 1) if i % 997 == 0]
    counts, order = out.splitlines()[:2]
    assert counts == f"{len(want) - len(skipped)} {len(want)}"
    got = [((int(t) + 500) // 1000, tag) for t, tag in  # trace-cmd rounds to the microsecond
           (x.split(":") for x in order.split())]
    assert got == [w for i, w in enumerate(want, 1) if i % 997]
    assert f"{len(skipped)} handler error(s) skipped" in err


def test_trace_time_seen_by_dump_in_batch_handlers_timers_and_hooks(tmp_path, capsys):
    s = script(tmp_path, """
        from tracewatch import on_batch, every, at_start, at_end
        from tracewatch.stream.dispatch import current_trace_time
        bad = []
        ticks = []
        @at_start
        def start():
            if current_trace_time() is not None:
                bad.append(("start", current_trace_time()))
        @on_batch("raw_syscalls:sys_exit")
        def exits(b):
            if current_trace_time() != int(b.common_ts[-1]):
                bad.append(("batch", current_trace_time(), int(b.common_ts[-1])))
        @every("5ms")
        def tick():
            ticks.append(current_trace_time())
        @at_end
        def end():
            print(bad)
            print(len(ticks), all(b - a == 5_000_000 for a, b in zip(ticks, ticks[1:])))
            print(current_trace_time())
    """)
    rc, out, err = run_script(capsys, s, "a_syscalls.v6.dat")
    assert rc == 0, err
    bad, ticks, end = out.splitlines()[:3]
    assert bad == "[]"
    assert int(ticks.split()[0]) >= 2 and ticks.split()[1] == "True"  # each tick at its deadline
    last = max(int(float(m.group("ts")) * 1e6) for m in map(RAW_LINE.match, fixture_path(
        "a_syscalls.v6.dat.raw.txt").read_text(errors="replace").splitlines()) if m)
    assert abs(int(end) // 1000 - last) <= 1  # the end hook: the last event's time
