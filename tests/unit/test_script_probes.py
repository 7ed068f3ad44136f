"""probe() / @on_probe: the names scripts get, what a live run enables, binding to a file's probe events."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tracewatch.errors import CaptureError
from tracewatch.script.api import ScriptHandlers, on, on_probe, probe, set_current_handlers
from tracewatch.script.probes import bind_file_probes


@pytest.fixture
def handlers():
    h = ScriptHandlers()
    previous = set_current_handlers(h)
    yield h
    set_current_handlers(previous)


def test_names(handlers):
    assert probe("libc:malloc(size=arg1:u64)") == "probe:malloc"
    assert probe("r:libc:malloc ret=$retval:x64") == "probe:malloc__return"
    assert probe("./prog:work", returns=True) == ("probe:work", "probe:work__return")
    assert probe("./prog:work_*") == "probe:work_*"
    assert probe("libc:malloc@@GLIBC_2.2.5+4") == "probe:malloc_4"
    assert [(r.spec.kind, r.name) for r in handlers.probes][-3:] == [
        ("r", "probe:work__return"), ("p", "probe:work_*"), ("p", "probe:malloc_4")]
    # the return probe of returns=True fetches nothing (the entry's arguments mean nothing there)
    assert probe("./prog:f(a=arg1)", returns=True) and handlers.probes[-1].spec.args == ()


def test_same_probe_twice_is_one_request(handlers):
    probe("libc:malloc")
    probe("libc:malloc")
    assert len(handlers.probes) == 1


def test_on_probe_registers_probe_and_handler(handlers):
    @on_probe("r:libc:malloc ret=$retval:x64", where="ret == 0")
    def failed(ev):
        pass

    assert [r.name for r in handlers.probes] == ["probe:malloc__return"]
    (h,) = handlers.events
    assert (h.pattern, h.where, h.batch, h.func) == ("probe:malloc__return", "ret == 0", False, failed)


def test_live_events_leave_probe_patterns_to_the_probes(handlers):
    on("sched:sched_switch")(lambda ev: None)
    on_probe("libc:malloc")(lambda ev: None)
    on("probe:*")(lambda ev: None)
    assert handlers.live_events() == (["sched:sched_switch"], [])


def test_bad_spec_fails_at_once(handlers):
    with pytest.raises(CaptureError, match=r"\$retval is only known at the return"):
        probe("libc:malloc ret=$retval")


def _fmt(system, name, kind):
    fields = ["__probe_ip"] if kind == "p" else ["__probe_func", "__probe_ret_ip"]
    return SimpleNamespace(system=system, name=name, fields=[SimpleNamespace(name=f) for f in fields + ["x"]])


def test_bind_to_a_files_probe_events(handlers):
    formats = [_fmt("tracewatch_9_0", "work_a", "p"), _fmt("tracewatch_9_0", "work_a__return", "r"),
               _fmt("tracewatch_9_0", "work_b", "p"), _fmt("tracewatch_9_0", "malloc_2", "p"),
               SimpleNamespace(system="sched", name="work_c", fields=[SimpleNamespace(name="prev_pid")])]
    on(probe("./prog:work_*"))(lambda ev: None)
    on("probe:*__return")(lambda ev: None)
    on_probe("libjemalloc:malloc")(lambda ev: None)
    on("sched:*")(lambda ev: None)
    bind_file_probes(handlers, formats)
    assert [h.pattern for h in handlers.events] == [
        "tracewatch_9_0:work_a", "tracewatch_9_0:work_b",  # an entry glob: no return events, no sched
        "tracewatch_9_0:work_a__return", "tracewatch_9_0:malloc_2", "sched:*"]


def test_bind_to_a_file_without_that_probe_is_one_line(handlers):
    on(probe("libc:free"))(lambda ev: None)
    with pytest.raises(CaptureError, match=r"rec.dat has no probe event for probe:free \(its probe events: t:work\)"):
        bind_file_probes(handlers, [_fmt("t", "work", "p")], "rec.dat")
