"""Live tests: they need root and a writable tracefs, and skip with the reason otherwise.

Every test here is marked ``live``.  After each one, an autouse fixture checks
that no ``tracewatch-*`` instance and no ``tracewatch*`` uprobe group is left
in the kernel: tests must leave the tracing state as they found it.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tracewatch.errors import CaptureError

LIVE_DIR = os.path.dirname(__file__)


def _live_unavailable() -> str | None:
    """Why live tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "live tests need root (tracefs instances)"
    from tracewatch.sources.tracefs import find_tracefs

    try:
        path = find_tracefs()
    except CaptureError as e:
        return f"live tests need tracefs: {e}"
    if not os.access(os.path.join(path, "instances"), os.W_OK):
        return f"live tests need a writable tracefs ({path}/instances is read-only)"
    return None


_REASON = _live_unavailable()


def pytest_collection_modifyitems(config, items):  # noqa: ANN001 (pytest hook)
    for item in items:
        if str(item.fspath).startswith(LIVE_DIR):
            item.add_marker(pytest.mark.live)
            if _REASON:
                item.add_marker(pytest.mark.skip(reason=_REASON))


def _owner_pid(name: str) -> int | None:
    """The pid in 'tracewatch-<pid>-<n>' or 'tracewatch_<pid>_<n>'."""
    parts = name.replace("_", "-").split("-")
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def leftovers(since: set[str] | None = None) -> list[str]:
    """tracewatch instances and uprobe groups that this test process is answerable for.

    Other tracewatch runs may be going on on the same machine (other test
    sessions, a user's trace): their instances are not ours.  Ours are those
    named with this process's pid, plus new ones (not in ``since``) whose
    owner has died: a child this test started and killed.
    """
    from tracewatch.sources.tracefs import TraceFS

    tfs = TraceFS()
    found = [f"instance {n}" for n in tfs.instance_names() if n.startswith("tracewatch-")]
    found += [f"uprobe {u.group}/{u.event}" for u in tfs.uprobes() if u.group.startswith("tracewatch")]
    if since is None:
        return found
    me = os.getpid()
    mine = []
    for item in found:
        pid = _owner_pid(item.split(" ", 1)[1].split("/")[0])
        if pid == me or (item not in since and pid is not None and not _alive(pid)):
            mine.append(item)
    return mine


@pytest.fixture(autouse=True)
def no_tracewatch_leftovers():
    """Each test must remove every instance and uprobe it created."""
    if _REASON:
        yield
        return
    before = set(leftovers())
    yield
    left = leftovers(since=before)
    if left:
        # clean up so one failure does not cascade, then fail this test
        from tracewatch.sources import tracefs

        tracefs._close_all_instances()
        tracefs.cleanup_stale()
        pytest.fail(f"test left tracing state behind: {', '.join(left)}")


@pytest.fixture
def global_state():
    """A snapshot of the top-level tracing settings, to check they never change."""
    from tracewatch.sources.tracefs import TraceFS

    tfs = TraceFS()

    def snap() -> dict[str, str]:
        files = ("tracing_on", "set_event", "set_event_pid", "set_event_notrace_pid", "trace_clock",
                 "buffer_size_kb", "buffer_percent", "current_tracer")
        return {rel: tfs.read(rel) for rel in files if tfs.exists(rel)}

    before = snap()
    yield
    assert snap() == before, "the global instance's settings changed"


# ---------------------------------------------------------------------- helpers

def elf_entry_offset(path: str) -> int:
    """File offset of an ELF executable's entry point (a safe place for a test uprobe)."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{path} is not a 64-bit ELF file"
    e_entry, e_phoff = struct.unpack_from("<QQ", data, 24)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    for i in range(e_phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 1 and p_vaddr <= e_entry < p_vaddr + p_filesz:  # PT_LOAD
            return e_entry - p_vaddr + p_offset
    raise AssertionError(f"{path}: entry point is in no PT_LOAD segment")


def python_binary() -> str:
    return os.path.realpath(sys.executable)


def gather(pages: np.ndarray, offsets: np.ndarray, field_offset: int, dtype: str) -> np.ndarray:
    """One fixed-size field of many records: the column at ``offsets + field_offset``."""
    size = np.dtype(dtype).itemsize
    if len(offsets) == 0:
        return np.zeros(0, dtype)
    idx = offsets[:, None] + field_offset + np.arange(size)
    return np.ascontiguousarray(pages[idx]).view(dtype).ravel()


def spawn_python(code: str, **kw) -> subprocess.Popen:
    """A child Python running ``code`` with tracewatch importable, pipes on stdin/stdout."""
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(LIVE_DIR)), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)
