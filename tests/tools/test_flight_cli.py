"""``tracewatch flight`` / ``status`` / ``run --keep``: options, declarative triggers, status, replay (no root)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import pytest

from tests.conftest import FIXTURES
from tracewatch.errors import ScriptError
from tracewatch.recorder.daemon import DeclarativeTrigger, format_status, parse_trigger
from tracewatch.tools import flight, run, status

AVAILABLE = ["raw_syscalls:sys_exit", "raw_syscalls:sys_enter", "sched:sched_switch"]


def test_trigger_spec_splits_at_the_last_colon_space_that_names_an_event():
    assert parse_trigger("raw_syscalls:sys_exit: ret == -11 && common_pid == 1234", AVAILABLE) == \
        ("raw_syscalls:sys_exit", "ret == -11 && common_pid == 1234")
    # ': ' inside the filter's string stays in the filter
    assert parse_trigger('sched:sched_switch: prev_comm == "a: b"', AVAILABLE) == \
        ("sched:sched_switch", 'prev_comm == "a: b"')
    assert parse_trigger("sched:sched_switch", AVAILABLE) == ("sched:sched_switch", None)
    assert parse_trigger("raw_syscalls:*: ret < 0", AVAILABLE) == ("raw_syscalls:*", "ret < 0")
    with pytest.raises(ScriptError, match="names no event"):
        parse_trigger("nosuch:event: ret < 0", AVAILABLE)


class _Batch:
    def __init__(self, ts, pid):
        self.common_ts = ts
        self.common_pid = pid

    def take_(self, sel):
        outer = self

        class _One:
            def events_(self):
                return [f"event at {outer.common_ts[sel[0]]}"]

        return _One()


def test_declarative_count_within_per_fires_once_per_burst():
    import numpy as np

    fired = []
    t = DeclarativeTrigger("raw_syscalls:sys_exit", "ret < 0", count=3, within="10ms", per="common_pid",
                           fire=lambda reason, ev: fired.append(ev))
    ms = 1_000_000
    # pid 1: 4 events within 10 ms (one burst), pid 2: 2 events (none), pid 1 again after a quiet 10 ms
    t.on_batch(_Batch(np.array([0, 1, 2, 3, 4, 5, 30, 31, 32]) * ms, np.array([1, 1, 2, 1, 2, 1, 1, 1, 1])))
    assert fired == [f"event at {3 * ms}", f"event at {32 * ms}"]
    assert t.matched == 9 and t.fired == 2
    with pytest.raises(ScriptError, match="--within"):
        DeclarativeTrigger("raw_syscalls:sys_exit", None, count=2)


def test_flight_needs_keep_and_out(capsys):
    with pytest.raises(SystemExit):
        flight.main(["--trigger", "sched:sched_switch"])
    assert "--keep" in capsys.readouterr().err


def test_flight_rejects_bad_sizes_and_both_forms(capsys, tmp_path):
    assert flight.main(["--trigger", "sched:sched_switch", "--keep", "64Q", "--out", str(tmp_path)]) == 2
    assert "--keep" in capsys.readouterr().err
    script = tmp_path / "s.py"
    script.write_text("")
    assert flight.main([str(script), "--trigger", "sched:sched_switch", "--keep", "1M", "--out",
                        str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert flight.main(["--keep", "1M", "--out", str(tmp_path), "--count", "3"]) == 2
    assert "refine --trigger" in capsys.readouterr().err


def test_flight_help_ends_with_examples(capsys):
    with pytest.raises(SystemExit):
        flight.main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "kill -USR1" in out and "--trigger" in out


def test_run_keep_needs_out(capsys, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("")
    assert run.main([str(script), "-i", "x.dat", "--keep", "1M"]) == 2
    assert "--keep and --out go together" in capsys.readouterr().err


def _status_doc(**over):
    doc = {"version": 1, "pid": 999_999_999, "state": "running", "updated_unix": time.time(), "interval_s": 2,
           "uptime_s": 3600, "reloads": 1, "script": "/etc/fr/stalls.py", "events_total": 12_345_678,
           "events_per_s": 310_000.0, "lost": 12, "ring": {"keep_bytes": 64 << 20, "bytes": 64 << 20,
                                                          "span_s": 9.1, "events": 2_000_000},
           "handlers": {"lag_ms": 1500.0, "late": True, "late_triggers": 2, "max_trigger_lag_ms": 2100.0},
           "dumps": {"dumps": 3, "triggers": 9, "suppressed_cooldown": 6, "skipped_disk_full": 0, "busy": 0,
                     "failed": 0},
           "out_dir": "/var/lib/fr", "rss_bytes": 300 << 20,
           "last_dump": {"file": "x.dat", "events": 10, "bytes": 1 << 20, "reason": "stall"}}
    doc.update(over)
    return doc


def test_status_text_says_late_handlers_and_dead_process():
    text = format_status(_status_doc())
    assert "LATE" in text and "1500 ms behind" in text
    assert "gone (pid 999999999 is not running" in text  # the pid does not exist
    assert all(len(line) < 100 for line in text.splitlines())
    assert "3 written, 9 triggers, 6 in cooldown" in text


def test_status_tool_reads_a_directory_and_prints_json(tmp_path, capsys):
    (tmp_path / "status.json").write_text(json.dumps(_status_doc(state="stopped")))
    assert status.main([str(tmp_path)]) == 0
    assert "stopped" in capsys.readouterr().out
    assert status.main([str(tmp_path), "-j"]) == 0
    assert json.loads(capsys.readouterr().out)["dumps"]["dumps"] == 3
    assert status.main([str(tmp_path / "nothing.json")]) == 2
    assert "no status file" in capsys.readouterr().err


@pytest.mark.skipif(not (FIXTURES / "a_syscalls.v6.dat").exists(), reason="shared fixtures not present")
def test_run_keep_replays_a_file_and_dump_gets_the_handlers_event_time(tmp_path, capsys):
    from tracewatch import open_trace

    out = tmp_path / "dumps"
    script = tmp_path / "trig.py"
    script.write_text(
        "from tracewatch import on, dump\n"
        "seen = []\n"
        "@on('raw_syscalls:sys_exit', where='ret < 0')\n"
        "def failed(ev):\n"
        "    seen.append(ev.common_ts)\n"
        "    if len(seen) == 3:\n"
        "        dump(reason='third failure', after='1ms')   # no event=: the handler's event time\n"
        "        print('TRIGGER', ev.common_ts)\n")
    assert run.main([str(script), "-i", str(FIXTURES / "a_syscalls.v6.dat"), "--keep", "1M", "--out",
                     str(out), "--min-free", "0"]) == 0
    cap = capsys.readouterr()
    trigger_ts = int(cap.out.split("TRIGGER")[1].split()[0])
    (side,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert side["reason"] == "third failure" and side["trigger"]["ts_ns"] == trigger_ts
    dat = out / side["file"]
    with open_trace(str(dat)) as d:
        ts = [e.common_ts for e in d.events()]
    assert max(ts) <= trigger_ts + 1_000_000 and min(ts) <= trigger_ts
    assert "dump written:" in cap.err


# -- the dump directory, checked before any tracing; the policy's defaults ---------------------------


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tracewatch: error: ") and "Traceback" not in err, err
    return lines[0]


def test_flight_out_that_is_a_file_is_one_line_and_status_2(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("not a directory")
    assert flight.main(["--trigger", "sched:sched_switch", "--keep", "1M", "--out", str(f)]) == 2
    assert "not a directory" in _one_error_line(capsys.readouterr().err)
    assert f.read_text() == "not a directory"


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory bind-mounted read-only onto itself (root only: chmod does not stop root)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    d = tmp_path / "ro"
    d.mkdir()
    r = subprocess.run(["mount", "--bind", str(d), str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount: {r.stderr.strip()}")
    try:
        r = subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_flight_read_only_out_is_said_at_start(read_only_dir, capsys):
    assert flight.main(["--trigger", "sched:sched_switch", "--keep", "1M", "--out", str(read_only_dir)]) == 2
    assert "Read-only file system" in _one_error_line(capsys.readouterr().err)
    assert flight.main(["--trigger", "sched:sched_switch", "--keep", "1M", "--out",
                        str(read_only_dir / "new")]) == 2
    assert "cannot create the dump directory" in _one_error_line(capsys.readouterr().err)


def test_flight_creates_a_missing_out_0700(tmp_path):
    args = flight.build_parser().parse_args(["--keep", "1M", "--out", str(tmp_path / "a" / "fr")])
    flight.recorder_kwargs(args)
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "fr").st_mode) == 0o700


def test_cooldown_and_dump_budget_have_the_defaults_the_help_says(tmp_path, capsys):
    args = flight.build_parser().parse_args(["--keep", "1M", "--out", str(tmp_path)])
    kw = flight.recorder_kwargs(args)
    assert kw["cooldown"] == "60s" and kw["dump_limit"] == 100 and kw["dump_limit_bytes"] == "2G"
    assert kw["file_mode"] == 0o600
    with pytest.raises(SystemExit):
        flight.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default 60s; 0: none)" in help_text and "(default 100;" in help_text and "(default 2G)" in help_text
    args = flight.build_parser().parse_args(["--keep", "1M", "--out", str(tmp_path), "--cooldown", "0",
                                             "--mode", "0640", "--dump-limit", "3"])
    kw = flight.recorder_kwargs(args)
    assert kw["cooldown"] == "0" and kw["file_mode"] == 0o640 and kw["dump_limit"] == 3


def test_bad_mode_and_limits_are_one_line(tmp_path, capsys):
    for extra, word in ((["--mode", "0755"], "--mode"), (["--mode", "rw"], "--mode"),
                        (["--mode", "0400"], "--mode"), (["--dump-limit", "0"], "--dump-limit"),
                        (["--dump-limit-bytes", "lots"], "--dump-limit-bytes"), (["--stop-grace", "soon"],
                                                                                  "--stop-grace")):
        assert flight.main(["--trigger", "sched:sched_switch", "--keep", "1M", "--out", str(tmp_path), *extra]) == 2
        assert word in _one_error_line(capsys.readouterr().err)


def test_cleanup_out_removes_unfinished_dumps_only(tmp_path, capsys):
    from tracewatch.tools import cleanup

    cut = tmp_path / ".20261130T071502.123Z-stall.dat.0a1b2c3d.tmp"
    cut.write_bytes(b"\0" * 100)
    dump = tmp_path / "20261130T071502.123Z-stall.dat"
    dump.write_bytes(b"a dump")
    assert cleanup.main(["--out", str(tmp_path), "--no-tracefs"]) == 0
    assert f"removed {cut}" in capsys.readouterr().out
    assert not cut.exists() and dump.exists()
    assert cleanup.main(["--out", str(tmp_path / "missing"), "--no-tracefs"]) == 2
    assert "no such directory" in _one_error_line(capsys.readouterr().err)


def test_status_text_says_failures_and_the_limit():
    doc = _status_doc()
    doc["dumps"].update(failed=2, failure="No space left on device", suppressed_limit=4)
    text = format_status(doc)
    assert "4 over the limit" in text and "2 failed (No space left on device)" in text


from tests.unit.test_dump_safety import tiny_tmpfs  # noqa: E402,F401 - a fixture: a 1 MiB tmpfs (root)


@pytest.mark.skipif(not (FIXTURES / "a_syscalls.v6.dat").exists(), reason="shared fixtures not present")
def test_run_keep_whose_dumps_fail_says_so_and_exits_2(tiny_tmpfs, tmp_path, capsys):  # noqa: F811
    """As flight: a run whose dumps did not reach the disk has not done its job."""
    script = tmp_path / "trig.py"
    # the out dir passes the start-up check, then turns read-only before the first dump
    script.write_text(
        "import subprocess\n"
        "from tracewatch import on, dump\n"
        "@on('raw_syscalls:sys_exit', where='ret < 0')\n"
        "def failed(ev):\n"
        "    if not getattr(failed, 'ro', False):\n"
        f"        subprocess.run(['mount', '-o', 'remount,ro', {str(tiny_tmpfs)!r}], check=True)\n"
        "        failed.ro = True\n"
        "    dump(reason='failure', event=ev)\n")
    rc = run.main([str(script), "-i", str(FIXTURES / "a_syscalls.v6.dat"), "--keep", "1M", "--out",
                   str(tiny_tmpfs), "--min-free", "0", "--cooldown", "0"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "dump(s) failed" in err and "tracewatch: error:" in err, err
