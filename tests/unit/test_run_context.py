"""The run context: one contextvar for what a run makes current (handlers, recorder,
dispatchers), separate per thread, put back after each run."""

from __future__ import annotations

import threading

from tracewatch.stream.run_context import RunContext, current_run, dispatching, set_current


def test_set_current_returns_the_previous_value_to_put_back():
    first, second = object(), object()
    before = current_run()
    previous = set_current("recorder", first)
    try:
        assert previous is before.recorder
        assert set_current("recorder", second) is first
        assert current_run().recorder is second and current_run().handlers is before.handlers
    finally:
        set_current("recorder", previous)
    assert current_run() == before


def test_dispatchers_nest_and_unwind():
    outer, inner = object(), object()
    assert current_run().dispatchers == ()
    with dispatching(outer):
        with dispatching(inner):
            assert current_run().dispatchers == (outer, inner)
        assert current_run().dispatchers == (outer,)
    assert current_run().dispatchers == ()


def test_what_a_hook_makes_current_outlives_the_dispatch():
    rec = object()
    previous = None
    try:
        with dispatching(object()):
            previous = set_current("recorder", rec)
        assert current_run().recorder is rec and current_run().dispatchers == ()
    finally:
        set_current("recorder", previous)


def test_threads_do_not_see_each_others_run():
    seen: dict[str, RunContext] = {}
    ready, go = threading.Event(), threading.Event()

    def other():
        seen["start"] = current_run()
        ready.set()
        go.wait()
        seen["later"] = current_run()

    t = threading.Thread(target=other)
    t.start()
    ready.wait()
    previous = set_current("handlers", "this thread's handlers")
    try:
        go.set()
        t.join()
        assert current_run().handlers == "this thread's handlers"
    finally:
        set_current("handlers", previous)
    assert seen["start"] == seen["later"] == RunContext()
