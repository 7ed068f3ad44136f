"""Flight-recorder dumps on the bad paths: a write killed half-way, a full disk, a directory in use,
file permissions, and the dump budget.

A dump cut short must never look like a trace (its magic is written last) and is removed when a
recorder opens the directory again; a failed dump is counted with its reason; files are 0600.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import raw_pages_meta
from tracewatch.errors import TraceFormatError, TracewatchError
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.recorder import FlightRecorder
from tracewatch.recorder.dump import DumpDir, remove_stale_temporaries
from tracewatch.testing import PageBuilder, make_payload

PAGE = 4096
ROOT = Path(__file__).resolve().parents[2]
TRACE_CMD = shutil.which("trace-cmd")


def recorder(out, keep="16K", **kw) -> FlightRecorder:
    kw.setdefault("min_free_bytes", 0)
    return FlightRecorder(keep, out, raw_pages_meta(), cpus=2, log=kw.pop("log", lambda m: None), **kw)


def feed_synthetic(rec: FlightRecorder, start: int, stop: int, step: int = 10_000, cpu: int = 0) -> None:
    b = PageBuilder(PAGE)
    for t in range(start, stop, step):
        b.add(t, make_payload(5, 24))
    rec.add_pages(cpu, np.frombuffer(b.build(), np.uint8))


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def temporaries(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


# -- permissions ---------------------------------------------------------------------------------


def test_dumps_and_sidecars_are_0600_in_a_created_0700_directory(tmp_path):
    out = tmp_path / "made" / "dumps"
    old = os.umask(0)  # the modes must not depend on the umask
    try:
        rec = recorder(out)
        feed_synthetic(rec, 1, 5_000_000)
        p = rec.trigger("perms", 4_000_000)
        rec.close()
    finally:
        os.umask(old)
    assert mode_of(out) == 0o700
    assert mode_of(p.result.path) == 0o600 and mode_of(p.result.sidecar) == 0o600


def test_file_mode_sets_files_and_the_created_directory(tmp_path):
    out = tmp_path / "shared"
    rec = recorder(out, file_mode=0o640)
    feed_synthetic(rec, 1, 5_000_000)
    p = rec.trigger("perms", 4_000_000)
    rec.close()
    assert mode_of(out) == 0o750
    assert mode_of(p.result.path) == 0o640 and mode_of(p.result.sidecar) == 0o640


def test_an_existing_directory_keeps_its_mode(tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    out.chmod(0o755)
    rec = recorder(out)
    rec.close()
    assert mode_of(out) == 0o755


# -- the directory -------------------------------------------------------------------------------


def test_a_file_as_the_directory_is_an_error_for_the_user(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(TracewatchError, match="not a directory"):
        DumpDir(f)
    with pytest.raises(TracewatchError, match="cannot create the dump directory"):
        DumpDir(f / "below")


def test_only_dump_temporaries_are_removed(tmp_path):
    names = [".20261130T071502.123Z-stall.dat.0a1b2c3d.tmp", ".20261130T071502.123Z-stall.json.deadbeef.tmp",
             ".status.json.01234567.tmp", ".notes.txt.01234567.tmp", "keep.tmp", ".20261130T071502.123Z-x.dat"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    removed = remove_stale_temporaries(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted(names[:3])
    assert sorted(os.listdir(tmp_path)) == sorted(names[3:])


HOLDER = """
import sys
from tracewatch.recorder.dump import DumpDir
d = DumpDir(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
"""


def test_a_directory_in_use_keeps_its_temporaries_until_it_is_free(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "holding"
        tmp = tmp_path / ".20261130T071502.123Z-busy.dat.0a1b2c3d.tmp"
        tmp.write_bytes(b"being written")
        d = DumpDir(tmp_path)
        assert d.shared_with == str(holder.pid) and d.swept is None and not d.locked
        d.close()
        assert tmp.exists()  # another recorder's file in the making
    finally:
        holder.stdin.close()
        holder.wait(60)
    d = DumpDir(tmp_path)
    assert d.locked and d.swept == [str(tmp)] and not tmp.exists()
    d.close()


# -- a dump killed half-way ------------------------------------------------------------------------

KILLED_WRITER = """
import os, sys, time
sys.path[:0] = [{src!r}, {root!r}]
import numpy as np
from tests.conftest import raw_pages_meta
from tracewatch.recorder import FlightRecorder
from tracewatch.recorder.dump import _DumpFileWriter  # (the package's `dump` is the function)
from tracewatch.testing import PageBuilder, make_payload

rec = FlightRecorder("64K", sys.argv[1], raw_pages_meta(), cpus=2, min_free_bytes=0, log=lambda m: None)

def feed(start, stop):
    for cpu in (0, 1):
        b = PageBuilder(4096)
        for t in range(start + cpu, stop, 10_000):
            b.add(t, make_payload(5, 24))
        rec.add_pages(cpu, np.frombuffer(b.build(), np.uint8))

feed(1, 20_000_000)
first = rec.trigger("complete", 19_000_000)
rec.close()
print(first.result.path, flush=True)

copy_cpu = _DumpFileWriter._copy_cpu

def stop_after_cpu0(self, out, cpu):
    if cpu == 1:  # CPU 0's pages are in the file: wait here to be killed, as if the disk were slow
        out.f.flush()
        print("writing", flush=True)
        time.sleep(3600)
    copy_cpu(self, out, cpu)

_DumpFileWriter._copy_cpu = stop_after_cpu0
feed(20_000_000, 50_000_000)
rec.trigger("killed", 40_000_000)
rec.close()
"""


def test_sigkill_during_a_dump_leaves_no_valid_trace_and_a_restart_removes_it(tmp_path):
    out = tmp_path / "dumps"
    code = KILLED_WRITER.format(src=str(ROOT / "src"), root=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    left = temporaries(out)
    assert len(left) == 1, os.listdir(out)
    cut = out / left[0]
    assert cut.stat().st_size > PAGE and mode_of(cut) == 0o600  # header and CPU 0's pages are there
    with pytest.raises(TraceFormatError):
        TraceDatReader(str(cut)).close()
    if TRACE_CMD:
        r = subprocess.run([TRACE_CMD, "report", "-i", str(cut)], capture_output=True, timeout=60)
        assert r.returncode != 0 and "cpus=" not in r.stdout.decode(errors="replace")
    # the restart: the temporary goes, the earlier dump stays whole
    rec = recorder(out)
    assert temporaries(out) == []
    with TraceDatReader(first) as r:
        assert r.cpus == 2 and sum(len(r.cpu_index(c).ts) for c in range(2)) > 0
    side = json.loads(Path(first).with_suffix(".json").read_text())
    assert side["reason"] == "complete"
    rec.close()


# -- a full disk -----------------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_dump_the_disk_cannot_hold_is_counted_as_failed_with_the_reason(tiny_tmpfs):
    lines: list[str] = []
    rec = recorder(tiny_tmpfs, keep="16K", log=lines.append)
    feed_synthetic(rec, 1, 30_000_000)
    feed_synthetic(rec, 2, 30_000_000, cpu=1)
    # fill the disk up to one page more than the ring holds: the free-space check lets the dumps
    # through, and the file (metadata and pages) does not fit
    st = os.statvfs(tiny_tmpfs)
    filler = st.f_bavail * st.f_frsize - rec.ring.bytes - PAGE
    (tiny_tmpfs / "filler").write_bytes(b"\0" * filler)
    rec.trigger("first", 10_000_000)
    rec.trigger("second", 20_000_000)
    rec.close()
    w = rec.writer
    assert w.failed == 2 and w.dumps_written == 0 and w.failure == "No space left on device"
    assert "0 dump(s) written, 2 failed (No space left on device)" in w.summary()
    assert sum("dump failed" in ln for ln in lines) == 2
    assert sorted(os.listdir(tiny_tmpfs)) == [".tracewatch.lock", "filler"]  # no dump, no temporary


# -- the budget ------------------------------------------------------------------------------------


def test_dumps_beyond_the_limit_are_counted_and_said_once(tmp_path):
    lines: list[str] = []
    rec = recorder(tmp_path, dump_limit=2, log=lines.append)
    feed_synthetic(rec, 1, 9_000_000)
    outcomes = [rec.trigger("storm", ts) is not None for ts in (1_000_000, 2_000_000, 3_000_000, 4_000_000)]
    forced = rec.dump_now("SIGUSR1")
    rec.close()
    assert outcomes == [True, True, False, False] and forced is not None
    w = rec.writer
    assert w.suppressed_limit == 2 and w.dumps_written == 3
    assert sum("dump limit reached" in ln for ln in lines) == 1
    assert "2 over the dump limit" in w.summary()
    assert rec.stats()["suppressed_limit"] == 2


def test_dump_limit_bytes_stops_dumping_once_reached(tmp_path):
    rec = recorder(tmp_path, dump_limit_bytes=1)
    feed_synthetic(rec, 1, 9_000_000)
    assert rec.trigger("first", 1_000_000) is not None  # nothing written yet: admitted
    rec.close()
    assert rec.writer.bytes_written > 1
    assert rec.trigger("second", 2_000_000) is None
    assert rec.writer.suppressed_limit == 1 and rec.writer.dumps_written == 1


# -- the notes that let `tracewatch cleanup` find the directories of killed recorders ---------------


def test_killed_recorders_directories_are_swept_through_their_notes(tmp_path, monkeypatch):
    from tracewatch.recorder import dump as _  # noqa: F401 (the module, for its RUN_DIR)

    dump_module = sys.modules["tracewatch.recorder.dump"]
    run_dir = tmp_path / "run"
    monkeypatch.setattr(dump_module, "RUN_DIR", str(run_dir))
    live_dir, dead_dir = tmp_path / "live", tmp_path / "dead"
    live_dir.mkdir()
    dead_dir.mkdir()
    live_tmp = live_dir / ".20261130T071502.123Z-a.dat.0a1b2c3d.tmp"
    dead_tmp = dead_dir / ".20261130T071502.123Z-b.dat.0a1b2c3d.tmp"
    for f in (live_tmp, dead_tmp):
        f.write_bytes(b"cut short")
    note = dump_module.register_dump_dir(str(live_dir))  # this process: alive
    assert note == str(run_dir / f"flight-{os.getpid()}.out")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that is not running any more
    (run_dir / f"flight-{gone.pid}.out").write_text(f"{dead_dir}\n")
    assert dump_module.cleanup_dead_dump_dirs() == [str(dead_tmp)]
    assert live_tmp.exists() and not dead_tmp.exists()
    assert sorted(os.listdir(run_dir)) == [f"flight-{os.getpid()}.out"]
    dump_module.unregister_dump_dir(note)
    assert os.listdir(run_dir) == []
