"""ScriptRunner on its own: a script file written by the test, run over a MemorySource.
Hook order, timers, the error policy, lost events, the whole-batch path, damage, and
what loading a script can go wrong with.  No fixture file, no kernel."""

from __future__ import annotations

import textwrap

import pytest

from tracewatch.errors import FilterError, HandlerError, ScriptError, TraceFormatError
from tracewatch.testing import MemorySource, event_format, record

A = event_format("demo:alpha", 300, "int value;")
B = event_format("demo:beta", 301, "int value;")


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "script.py"
    path.write_text("from tracewatch import on, on_batch, every, at_start, at_end, on_lost\n"
                    "log = []\n" + textwrap.dedent(body))
    return str(path)


def _source(n: int = 10, *, lost: dict | None = None, **kw) -> MemorySource:
    """``n`` events alternating alpha (CPU 0) and beta (CPU 1) at 1000, 1100, ...; value = the
    event's number; ``lost``: {event number: count} marks a loss before that event."""
    src = MemorySource([A, B], **kw)
    for i in range(n):
        cpu, fmt = (0, A) if i % 2 == 0 else (1, B)
        if lost and i in lost:
            src.lose(cpu, lost[i])
        src.add(cpu, 1_000 + 100 * i, record(fmt, value=i))
    return src


def _load(tmp_path, body: str, **kw):
    """The runner of a script of ``body`` and the script's ``log`` list."""
    from tracewatch.script.runner import ScriptRunner

    runner = ScriptRunner(_script(tmp_path, body), **kw)
    return runner, runner.namespace["log"]


def test_start_hooks_events_and_end_hooks_in_order(tmp_path):
    runner, log = _load(tmp_path, """
        @at_start
        def first(): log.append("start 1")
        @at_start
        def second(): log.append("start 2")
        @on("demo:*")
        def ev(e): log.append(e.value)
        @at_end
        def end1(): log.append("end 1")
        @at_end
        def end2(): log.append("end 2")
    """)
    src = _source(6, chunk_events=4)
    d = runner.run(src)
    assert log == ["start 1", "start 2", 0, 1, 2, 3, 4, 5, "end 1", "end 2"]
    assert d.events_dispatched == 6 and runner.dispatcher is d


def test_script_argv_and_main(tmp_path):
    from tracewatch.script.runner import ScriptRunner

    path = _script(tmp_path, """
        import sys
        log.append((sys.argv[1:], __name__))
    """)
    runner = ScriptRunner(path, ["-n", "5"])
    assert runner.namespace["log"] == [(["-n", "5"], "__main__")]


def test_timers_fire_on_trace_time_during_the_run(tmp_path):
    runner, log = _load(tmp_path, """
        from tracewatch.stream.dispatch import current_trace_time
        @every("250ns")
        def tick(): log.append(("tick", current_trace_time()))
        @on("demo:alpha")
        def ev(e): log.append(("event", e.common_ts))
    """)
    src = _source(8)
    runner.run(src)
    alpha = [1_000 + 100 * i for i in range(0, 8, 2)]  # 1000, 1200, 1400, 1600
    # every event of the trace moves time on (the timer starts at the first event, 1000)
    all_ts = [1_000 + 100 * i for i in range(8)]
    want, deadline = [], 1_250
    for ts in all_ts:
        while deadline <= ts:
            want.append(("tick", deadline))
            deadline += 250
        if ts in alpha:
            want.append(("event", ts))
    assert log == want


def test_a_handler_error_stops_the_run_and_end_hooks_still_run(tmp_path):
    runner, log = _load(tmp_path, """
        @on("demo:*")
        def ev(e):
            if e.value == 3:
                raise RuntimeError("bad event")
            log.append(e.value)
        @at_end
        def end(): log.append("end")
    """)
    src = _source(8)
    with pytest.raises(HandlerError, match="script.py:.*RuntimeError: bad event"):
        runner.run(src)
    assert log == [0, 1, 2, "end"]


def test_skip_policy_runs_every_other_event(tmp_path, capsys):
    runner, log = _load(tmp_path, """
        @on("demo:*")
        def ev(e):
            if e.value % 3 == 0:
                raise RuntimeError("bad event")
            log.append(e.value)
    """, on_error="skip")
    src = _source(10)
    d = runner.run(src)
    assert log == [i for i in range(10) if i % 3] and d.errors == 4
    assert "raised RuntimeError: bad event" in capsys.readouterr().err


def test_an_end_hook_error_after_a_handler_error_does_not_hide_it(tmp_path):
    runner, log = _load(tmp_path, """
        @on("demo:alpha")
        def ev(e): raise KeyError("first")
        @at_end
        def end(): raise ValueError("second")
        @at_end
        def later(): log.append("later end hook")
    """)
    src = _source(4)
    with pytest.raises(HandlerError, match="KeyError"):
        runner.run(src)
    assert log == ["later end hook"]


LOST_SCRIPT = """
    @on_lost
    def lost(cpu, count): log.append(("lost", cpu, count))
    @on("demo:*")
    def ev(e): log.append(e.value)
"""


def test_lost_events_reach_on_lost(tmp_path):
    runner, log = _load(tmp_path, LOST_SCRIPT)
    # a chunk's losses are reported before its events: one event per chunk shows where they were
    src = _source(6, lost={2: 4, 5: -1}, chunk_events=1)
    d = runner.run(src)
    assert log == [0, 1, ("lost", 0, 4), 2, 3, 4, ("lost", 1, -1), 5]
    assert d.lost_events == {0: 4, 1: 0}
    # all in one chunk: the chunk's losses come before its first event
    again, log = _load(tmp_path, LOST_SCRIPT)
    again.run(_source(6, lost={2: 4, 5: -1}))
    assert log == [("lost", 0, 4), ("lost", 1, -1), 0, 1, 2, 3, 4, 5]


class _SplitSpy(MemorySource):
    """A MemorySource that counts how it was read."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.reads = []

    def chunks(self):
        self.reads.append("chunks")
        return super().chunks()

    def split(self, *a, **kw):
        self.reads.append("split")
        return super().split(*a, **kw)


BATCH_SCRIPT = """
    @on_batch("demo:*", where="value != 4")
    def ev(b): log.extend((b.format_.name, v) for v in b.value.tolist())
"""


@pytest.mark.parametrize("merges_whole", [True, False])
def test_batch_only_scripts_take_the_whole_trace_when_the_source_offers_it(tmp_path, merges_whole):
    src = _SplitSpy([A, B], merges_whole=merges_whole, chunk_events=3)
    for i in range(10):
        src.add(i % 2, 1_000 + 100 * i, record(A if i % 2 == 0 else B, value=i))
    runner, log = _load(tmp_path, BATCH_SCRIPT)
    runner.run(src)
    assert src.reads == (["split"] if merges_whole else ["chunks"])
    assert sorted(log) == sorted(("alpha" if i % 2 == 0 else "beta", i) for i in range(10) if i != 4)


def test_batch_only_scripts_read_chunks_when_a_recorder_is_given(tmp_path):
    class Recorder:
        closed = False

        def close(self):
            self.closed = True

    src = _SplitSpy([A, B])
    src.add(0, 1_000, record(A, value=1))
    runner, log = _load(tmp_path, BATCH_SCRIPT)
    rec = Recorder()
    runner.run(src, recorder=rec)
    assert src.reads == ["chunks"] and rec.closed and log == [("alpha", 1)]


class _DamagedSource(MemorySource):
    """Hands over its events, then fails as a damaged file does."""

    def chunks(self):
        yield from super().chunks()
        raise TraceFormatError("page 3 is damaged", path="memory")


def test_damaged_input_delivers_what_came_before_and_end_hooks_run(tmp_path):
    src = _DamagedSource([A, B])
    for i in range(3):
        src.add(0, 1_000 + i, record(A, value=i))
    runner, log = _load(tmp_path, """
        @on("demo:alpha")
        def ev(e): log.append(e.value)
        @at_end
        def end(): log.append("end")
    """)
    with pytest.raises(TraceFormatError, match="damaged"):
        runner.run(src)
    assert log == [0, 1, 2, "end"]


def test_a_live_source_runs_the_same_script(tmp_path):
    body = """
        @on("demo:*")
        def ev(e): log.append((e.common_cpu, e.value))
        @every("300ns")
        def tick(): log.append("tick")
    """
    logs = []
    for live in (False, True):
        src = _source(9, live=live, chunk_events=2)
        runner, log = _load(tmp_path, body)
        runner.run(src)
        logs.append(log)
    assert logs[0] == logs[1] and logs[0].count("tick") == 2  # at 1300 and 1600; 1900 is after the last event


def test_loading_errors_name_the_script(tmp_path):
    from tracewatch.script.runner import ScriptRunner

    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\ndef f(:\n")
    with pytest.raises(ScriptError, match=r"bad\.py:2: SyntaxError"):
        ScriptRunner(str(bad))
    raising = tmp_path / "raising.py"
    raising.write_text("import sys\n\nraise LookupError('no such thing')\n")
    with pytest.raises(ScriptError, match=r"raising\.py:3: LookupError: no such thing"):
        ScriptRunner(str(raising))
    with pytest.raises(ScriptError, match="cannot read script"):
        ScriptRunner(str(tmp_path / "missing.py"))


def test_a_bad_where_fails_before_start_hooks(tmp_path):
    runner, log = _load(tmp_path, """
        @at_start
        def start(): log.append("start")
        @on("demo:alpha", where="value = 1")
        def ev(e): log.append(e.value)
    """)
    src = _source(2)
    with pytest.raises(FilterError, match="did you mean '=='"):
        runner.run(src)
    assert log == []


def test_a_stop_ends_the_handling_at_once_and_end_hooks_run(tmp_path):
    runner, log = _load(tmp_path, """
        @on("demo:*")
        def ev(e):
            log.append(e.value)
            if e.value == 3:
                source.stop("a signal")  # as a signal stops a live session mid-run
        @at_end
        def end(): log.append("end")
    """)
    src = _source(10, live=True)
    runner.namespace["source"] = src
    d = runner.run(src)
    assert log == [0, 1, 2, 3, "end"]
    assert d.stopped and d.dropped_at_stop == 6 and d.events_dispatched == 4
