"""Instance.exclude_pids against a fake tracefs directory: what is written to set_event_notrace_pid, and when.

The fake is a plain directory with the instance's control files.  Plain
files append on O_APPEND as the kernel's pid files do (a write without
O_TRUNC adds to the list), so the file holds what the kernel's list would.
"""

from __future__ import annotations

import os
import shutil
import threading

import pytest

from tracewatch.sources import tracefs
from tracewatch.sources.tracefs import Instance, TraceFS, own_thread_ids

INSTANCE_FILES = ("tracing_on", "set_event_pid", "set_event_notrace_pid")


@pytest.fixture
def fake_instance(tmp_path, monkeypatch):
    """``make(notrace=True)``: an Instance over a fake tracefs; ``removed`` holds its files as close() left them."""
    top = tmp_path / "tracing"
    (top / "instances").mkdir(parents=True)
    removed: dict[str, str] = {}

    def make(*, notrace: bool = True) -> Instance:
        def mkdir(self: Instance) -> tuple[str, str]:
            name = f"tracewatch-{os.getpid()}-0"
            path = top / "instances" / name
            path.mkdir()
            for rel in INSTANCE_FILES:
                if notrace or rel != "set_event_notrace_pid":
                    (path / rel).write_text("")
            return name, str(path)

        monkeypatch.setattr(Instance, "_mkdir", mkdir)
        return Instance(TraceFS(str(top)), clean_stale=False)

    def rmdir(path: str) -> None:  # the kernel removes an instance's files with it; a plain directory does not
        for rel in os.listdir(path):
            with open(os.path.join(path, rel)) as f:
                removed[rel] = f.read()
        shutil.rmtree(path)

    monkeypatch.setattr(tracefs, "_rmdir_instance", rmdir)
    make.removed = removed  # type: ignore[attr-defined]
    return make


def test_excluded_pids_are_appended_once_and_cleared_on_close(fake_instance):
    inst = fake_instance()
    notrace = os.path.join(inst.path, "set_event_notrace_pid")
    assert inst.can_exclude_pids and inst.excluded_pids == []
    assert inst.exclude_pids([30, 10]) is True
    assert inst.exclude_pids([10, 20]) is True  # 10 is in already: only 20 is written
    assert inst.exclude_pids([]) is True
    assert open(notrace).read() == "10 30\n20\n"
    assert inst.excluded_pids == [10, 30, 20]
    assert open(os.path.join(inst.path, "set_event_pid")).read() == ""  # the follow list is another file
    inst.close()
    assert fake_instance.removed["set_event_notrace_pid"] == ""
    assert not os.path.exists(inst.path)


def test_own_threads_excluded_when_asked_and_threads_started_later_added(fake_instance):
    inst = fake_instance()
    notrace = os.path.join(inst.path, "set_event_notrace_pid")
    started, finish = threading.Event(), threading.Event()
    tids: list[int] = []

    def worker() -> None:
        tids.append(threading.get_native_id())
        started.set()
        finish.wait(10)

    later = threading.Thread(target=worker)
    try:
        first = own_thread_ids()
        assert os.getpid() in first and threading.get_native_id() in first
        assert inst.exclude_pids(first) is True
        later.start()
        started.wait(10)
        assert tids[0] not in inst.excluded_pids
        assert inst.exclude_pids(own_thread_ids()) is True
        lines = open(notrace).read().splitlines()
        assert lines[0].split() == [str(t) for t in first]
        assert tids[0] in map(int, lines[-1].split())  # the rescan writes only threads new since
        assert set(map(int, lines[-1].split())).isdisjoint(first)
    finally:
        finish.set()
        if later.is_alive():
            later.join()
        inst.close()


def test_without_set_event_notrace_pid_nothing_is_written(fake_instance):
    inst = fake_instance(notrace=False)
    assert inst.can_exclude_pids is False
    assert inst.exclude_pids(own_thread_ids()) is False
    assert inst.excluded_pids == []
    assert not os.path.exists(os.path.join(inst.path, "set_event_notrace_pid"))
    inst.close()  # and close does not try to clear a file that is not there
    assert "set_event_notrace_pid" not in fake_instance.removed
