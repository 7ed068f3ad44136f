"""`tracewatch report` as a user runs it: output, options, and errors at the edges."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import fixture_path
from tracewatch.tools import report

FILES = ["a_syscalls.v6.dat", "b_sched.v6.dat", "c_markers.v6.dat", "e_mixed.v6.dat"]


def run_report(capsysbinary, *argv: str) -> tuple[int, bytes, str]:
    rc = report.main(list(argv))
    out, err = capsysbinary.readouterr()
    return rc, out, err.decode()


@pytest.mark.parametrize("name", FILES + ["e_mixed.v7z.dat"])
@pytest.mark.parametrize("raw", [False, True])
def test_report_equals_trace_cmd(capsysbinary, name, raw):
    path = fixture_path(name)
    stored = fixture_path(name.replace(".v7z", ".v6") + (".raw.txt" if raw else ".report.txt")).read_bytes()
    rc, out, err = run_report(capsysbinary, *(["--raw"] if raw else []), str(path))
    assert rc == 0, err
    if out != stored:
        got, want = out.split(b"\n"), stored.split(b"\n")
        first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b) if got[: len(want)] != want else len(want)
        pytest.fail(f"line {first + 1} differs:\n got: {got[first] if first < len(got) else b'<EOF>'!r}\n"
                    f"want: {want[first] if first < len(want) else b'<EOF>'!r}")


def test_cpu_and_events_filters(capsysbinary):
    path = str(fixture_path("b_sched.v6.dat"))
    rc, out, _ = run_report(capsysbinary, "--cpu", "1", "--events", "sched:sched_switch", path)
    assert rc == 0
    lines = out.decode().splitlines()[1:]
    want = [l for l in fixture_path("b_sched.v6.dat.report.txt").read_text().splitlines()
            if "[001]" in l and " sched_switch: " in l]
    assert lines == want and len(lines) > 100


def test_json_one_object_per_event(capsysbinary):
    path = str(fixture_path("b_sched.v6.dat"))
    rc, out, _ = run_report(capsysbinary, "--json", path)
    assert rc == 0
    objs = [json.loads(l) for l in out.decode().splitlines()]
    assert len(objs) == 2309
    sw = next(o for o in objs if o["event"] == "sched:sched_switch")
    assert {"common_ts", "common_cpu", "common_pid", "common_comm", "prev_comm", "next_pid"} <= set(sw)
    wk = next(o for o in objs if o["event"] == "sched:sched_wakeup")
    assert "pid" in wk and "common_pid" in wk  # the field and the metadata never collide


def test_missing_file_is_one_line_exit_2(capsysbinary, tmp_path):
    rc, out, err = run_report(capsysbinary, str(tmp_path / "nope.dat"))
    assert rc == 2 and out == b""
    assert err.count("\n") == 1 and "nope.dat" in err and "Traceback" not in err


@pytest.mark.parametrize("head, what", [(b"PERFILE2" + bytes(100), "perf.data"), (b"", "empty"),
                                        (b"\x17\x08\x44tracing6\0" + bytes(3), "")])
def test_not_a_trace(capsysbinary, tmp_path, head, what):
    p = tmp_path / "x.dat"
    p.write_bytes(head)
    rc, out, err = run_report(capsysbinary, str(p))
    assert rc == 2
    assert err.startswith("tracewatch: error: ") and str(p) in err and "Traceback" not in err
    assert what in err


def test_truncated_file_prints_events_before_damage(capsysbinary, tmp_path):
    src = fixture_path("a_syscalls.v6.dat").read_bytes()
    p = tmp_path / "cut.dat"
    p.write_bytes(src[: len(src) - 100_000])
    rc, out, err = run_report(capsysbinary, str(p))
    assert rc == 2
    first = err.splitlines()[0]
    assert str(p) in first and "0x" in first and "Traceback" not in err
    lines = out.decode().splitlines()
    assert len(lines) > 1000  # the events before the damage were printed
    stored = fixture_path("a_syscalls.v6.dat.report.txt").read_text().splitlines()
    stored_set = set(stored)
    assert all(l in stored_set for l in lines)


def test_command_line_entry_point(tmp_path):
    """The installed command runs and exits 2 with one line on bad input."""
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"hello world")
    r = subprocess.run([sys.executable, "-m", "tracewatch", "report", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("case", range(6))
def test_report_merged_in_windows_prints_the_same(capsysbinary, tmp_path, monkeypatch, case):
    # big files are merged a window of pages at a time: force that on the fixtures (whole and
    # damaged) and compare every output with the whole merge's
    import random

    from tracewatch.formats.tracedat import TraceDatReader

    name = ["a_syscalls.v6.dat", "b_sched.v6.dat", "e_mixed.v6.dat", "e_mixed.v7z.dat", "c_markers.v6.dat",
            "e_mixed.v6.dat"][case]
    data = bytearray(fixture_path(name).read_bytes())
    if case >= 3:
        rng = random.Random(case)
        spans = [(d.file_offset, d.file_size) for d in TraceDatReader(fixture_path(name)).buffer.cpus if d.file_size]
        off, size = rng.choice(spans)
        data = data[: off + rng.randrange(size)] if case == 3 else data
        if case != 3:
            for _ in range(8):
                data[off + rng.randrange(size)] = rng.randrange(256)
    path = tmp_path / "t.dat"
    path.write_bytes(bytes(data))
    for argv in ([], ["--raw"], ["--json"], ["--keep-going", "--stat"], ["--cpu", "1", "--events", "sched:*,*irq*"]):
        whole = run_report(capsysbinary, *argv, str(path))
        with monkeypatch.context() as m:
            m.setattr(report, "WHOLE_MERGE_BYTES", 0)
            m.setattr(report, "WINDOW_PAGES", 2)
            m.setattr(report, "PART_EVENTS", 777)
            windows = run_report(capsysbinary, *argv, str(path))
        assert windows == whole, argv


# ---------------------------------------------------------------- event names a file does not have

SCHED = "b_sched.v6.dat"


def _script(tmp_path, pattern: str) -> str:
    p = tmp_path / "events.py"
    p.write_text("from tracewatch import on\n"
                 f"@on({pattern!r})\n"
                 "def handler(ev):\n"
                 "    print(ev.name_)\n")
    return str(p)


def _run_over_file(capsys, script: str, name: str) -> tuple[int, str, str]:
    from tracewatch.tools import run

    rc = run.main([script, "-i", str(fixture_path(name))])
    out, err = capsys.readouterr()
    return rc, out, err


def capsysbinary_like(capsys):
    """run_report reads bytes from capsysbinary; this adapts capsys (text) for one call."""
    class Adapter:
        def readouterr(self):
            out, err = capsys.readouterr()
            return out.encode(), err.encode()
    return Adapter()


def _kernel_knows(monkeypatch, names: list[str] | None) -> None:
    """Make the local kernel's event list ``names`` (None: tracefs unreadable)."""
    from tracewatch.sources import file

    monkeypatch.setattr(file, "kernel_event_names", lambda: names)


@pytest.mark.parametrize("pattern, close", [("sched:sched_swich", "sched:sched_switch"),
                                            ("sched_swich", "sched:sched_switch"),
                                            ("sched:sched_wakeup_nw*", "sched:sched_wakeup_new")])
def test_misspelt_event_over_a_file_is_the_live_error(capsys, tmp_path, monkeypatch, pattern, close):
    _kernel_knows(monkeypatch, ["sched:sched_switch", "sched:sched_wakeup_new", "irq:irq_handler_entry"])
    rc, out, err = _run_over_file(capsys, _script(tmp_path, pattern), SCHED)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"tracewatch: error: {fixture_path(SCHED)}: unknown event {pattern!r}; did you mean ")
    assert close in err
    rc, out, err = run_report(capsysbinary_like(capsys), "--events", f"sched:*,{pattern}", str(fixture_path(SCHED)))
    assert rc == 2 and err.startswith("tracewatch: error: ") and close in err and err.count("\n") == 1


def test_glob_matching_nothing_anywhere_is_an_error(capsys, tmp_path, monkeypatch):
    _kernel_knows(monkeypatch, ["sched:sched_switch", "irq:irq_handler_entry"])
    rc, out, err = _run_over_file(capsys, _script(tmp_path, "*:*no_such_event*"), SCHED)
    assert rc == 2 and err.count("\n") == 1
    assert "unknown event '*:*no_such_event*'" in err and f"tracewatch list -i {fixture_path(SCHED)}" in err


def test_event_the_kernel_has_but_the_file_not_is_a_note(capsys, tmp_path, monkeypatch):
    _kernel_knows(monkeypatch, ["sched:sched_switch", "irq:irq_handler_entry", "irq:irq_handler_exit"])
    for pattern in ("irq:irq_handler_entry", "irq:*"):
        rc, out, err = _run_over_file(capsys, _script(tmp_path, pattern), SCHED)
        assert rc == 0 and out == ""
        assert err.startswith(f"tracewatch: note: {fixture_path(SCHED)} has no {pattern!r} events")
        assert "error" not in err
    rc, out, err = run_report(capsysbinary_like(capsys), "--events", "irq:*", str(fixture_path(SCHED)))
    assert rc == 0 and out == b"cpus=2\n" and err.startswith("tracewatch: note: ")


def test_without_a_readable_tracefs_a_missing_event_is_a_note(capsys, tmp_path, monkeypatch):
    _kernel_knows(monkeypatch, None)
    rc, out, err = _run_over_file(capsys, _script(tmp_path, "sched:sched_swich"), SCHED)
    assert rc == 0 and out == ""
    assert err.startswith("tracewatch: note: ") and "did you mean sched:sched_switch" in err
    assert "tracefs is not readable" in err


def test_events_the_file_has_need_no_kernel(capsys, tmp_path, monkeypatch):
    def no_lookup():
        raise AssertionError("the kernel's events were read although the file has the event")

    from tracewatch.sources import file

    monkeypatch.setattr(file, "kernel_event_names", no_lookup)
    rc, out, err = _run_over_file(capsys, _script(tmp_path, "sched:sched_switch"), SCHED)
    want = sum(" sched_switch: " in l for l in fixture_path(SCHED + ".report.txt").read_text().splitlines())
    assert rc == 0 and err == "" and out.splitlines() == ["sched_switch"] * want


def test_kernel_event_names_reads_the_local_tracefs():
    from tracewatch.sources.file import kernel_event_names

    names = kernel_event_names()
    if names is None:
        pytest.skip("tracefs is not readable here")
    assert "sched:sched_switch" in names


# ---------------------------------------------------------------- directories, pipes, standard input


def test_directory_is_one_line_exit_2(capsysbinary, tmp_path):
    rc, out, err = run_report(capsysbinary, str(tmp_path))
    assert rc == 2 and out == b""
    assert err == f"tracewatch: error: {tmp_path}: is a directory, not a trace.dat file\n"
    from tracewatch.tools import run

    script = tmp_path / "s.py"
    script.write_text("from tracewatch import on\n@on('*')\ndef f(ev):\n    pass\n")
    rc = run.main([str(script), "-i", str(tmp_path)])
    _, err = capsysbinary.readouterr()
    assert rc == 2 and err.decode() == f"tracewatch: error: {tmp_path}: is a directory, not a trace.dat file\n"


def _stdin_of(monkeypatch, data: bytes) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize("argv", [["-"], ["-i", "-"], ["--raw", "-"]])
def test_standard_input_reads_like_the_file(capsysbinary, monkeypatch, argv):
    name = "b_sched.v6.dat"
    _stdin_of(monkeypatch, fixture_path(name).read_bytes())
    rc, out, err = run_report(capsysbinary, *argv)
    want = fixture_path(name + (".raw.txt" if "--raw" in argv else ".report.txt")).read_bytes()
    assert rc == 0 and err == "" and out == want


def test_damaged_standard_input_names_it(capsysbinary, monkeypatch):
    _stdin_of(monkeypatch, fixture_path("a_syscalls.v6.dat").read_bytes()[:100_000])
    rc, out, err = run_report(capsysbinary, "-")
    assert rc == 2 and err.startswith("tracewatch: error: standard input: CPU ") and "Traceback" not in err
    assert "/proc/self/fd" not in err
    _stdin_of(monkeypatch, b"")
    rc, out, err = run_report(capsysbinary, "-")
    assert rc == 2 and err.startswith("tracewatch: error: standard input: ") and out == b""


def test_fifo_is_read_whole(capsysbinary, tmp_path):
    import os
    import threading

    name = "c_markers.v6.dat"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = fixture_path(name).read_bytes()

    def feed():
        with open(fifo, "wb") as w:
            w.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        rc, out, err = run_report(capsysbinary, str(fifo))
    finally:
        writer.join()
    assert rc == 0 and err == "" and out == fixture_path(name + ".report.txt").read_bytes()


def test_run_over_standard_input(capsys, monkeypatch, tmp_path):
    from tracewatch.tools import run

    name = "b_sched.v6.dat"
    _stdin_of(monkeypatch, fixture_path(name).read_bytes())
    script = tmp_path / "count.py"
    script.write_text("from tracewatch import on, at_end\nn = []\n"
                      "@on('sched:sched_switch')\ndef f(ev):\n    n.append(ev.next_pid)\n"
                      "@at_end\ndef end():\n    print(len(n))\n")
    rc = run.main([str(script), "-i", "-"])
    out, err = capsys.readouterr()
    want = sum(" sched_switch: " in l for l in fixture_path(name + ".report.txt").read_text().splitlines())
    assert rc == 0 and err == "" and out == f"{want}\n"


def test_cat_into_dev_stdin(tmp_path):
    """`cat x.dat | tracewatch report /dev/stdin`, as a shell runs it."""
    name = "b_sched.v6.dat"
    with open(fixture_path(name), "rb") as src:
        r = subprocess.run(f"cat | {sys.executable} -m tracewatch report /dev/stdin", shell=True, stdin=src,
                           capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == fixture_path(name + ".report.txt").read_bytes()


def test_file_and_live_say_unknown_events_in_the_same_words():
    from tracewatch.errors import CaptureError, TracewatchError
    from tracewatch.formats.tracedat import TraceDatReader
    from tracewatch.sources.file import check_event_patterns
    from tracewatch.sources.tracefs import expand_event_globs

    path = str(fixture_path(SCHED))
    formats = TraceDatReader(path).formats
    names = sorted(f.full_name for f in formats.values())
    for pattern in ("sched:sched_swich", "sched_wakeup_nw", "schd:*"):
        with pytest.raises(CaptureError) as live:
            expand_event_globs([pattern], names)  # what a live run says, were these the kernel's events
        with pytest.raises(TracewatchError) as over_file:
            check_event_patterns(path, [pattern], formats, kernel_events=lambda: ["irq:irq_handler_entry"])
        assert str(over_file.value) == f"{path}: {live.value}"


def test_a_cpu_the_file_does_not_have_is_an_error(capsysbinary):
    path = str(fixture_path(SCHED))
    rc, out, err = run_report(capsysbinary, "--cpu", "0,7", path)
    assert rc == 2 and out == b"" and err == f"tracewatch: error: --cpu 7: {path} has CPUs 0-1\n"
    rc, out, err = run_report(capsysbinary, "--cpu", "1", path)
    assert rc == 0 and len(out.splitlines()) > 100


def test_cpu_lists_take_ranges_and_a_bad_one_is_a_usage_error(capsysbinary):
    path = str(fixture_path(SCHED))
    rc, both, _ = run_report(capsysbinary, "--cpu", "0-1", path)
    assert rc == 0
    rc, one, _ = run_report(capsysbinary, "--cpu", "0", "--cpu", "1", path)
    assert rc == 0 and one == both
    rc, out, err = run_report(capsysbinary, "--cpu", "1-x", path)
    assert rc == 2 and out == b"" and err == "tracewatch: error: --cpu: not a CPU list: '1-x' (e.g. 1, 0-3,5)\n"
