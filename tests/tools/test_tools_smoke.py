"""Every registered tool runs: its --help, once on a fixture file, and (as root) once live for 1 s.

Like bcc's tests/python/test_tools_smoke.py: not a test of what a tool
computes (each tool has its own tests), but that every command in
``tools._command.TOOLS`` starts, parses, reads its input, tracers and all,
and ends with status 0 (or, for misuse, one line and status 2).  A new tool
must be added to the tables below (``test_every_tool_has_a_smoke_run`` says
so), which is the point: ``tracewatch COMMAND`` never ships untried.
"""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import fixture_path
from tracewatch.tools._command import TOOLS

#: the trace.dat the file runs read (sched events of 2 CPUs, made by trace-cmd)
FIXTURE = "b_sched.v6.dat"

COUNT_SCRIPT = """\
from tracewatch import on, at_end

seen = 0


@on("sched:sched_switch")
def switch(ev):
    global seen
    seen += 1


@at_end
def report():
    print(f"sched_switch {seen}")
"""


def _main(tool: str) -> Callable[[list[str]], int]:
    return importlib.import_module(f"tracewatch.tools.{TOOLS[tool][0]}").main


def _run_tool(tool: str, argv: list[str], capsys) -> tuple[int, str, str]:  # noqa: ANN001
    rc = _main(tool)(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# -- --help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", list(TOOLS))
def test_help_ends_with_examples_and_fits_80_columns(tool, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal; a test has none
    with pytest.raises(SystemExit) as end:
        _main(tool)(["--help"])
    assert end.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tracewatch {tool}"), out[:80]
    last_section = out.rstrip("\n").split("\n\n")[-1]
    assert last_section.startswith("examples:"), f"tracewatch {tool} --help does not end with examples"
    assert f"tracewatch {tool}" in last_section, "the examples do not show the command"
    wide = [line for line in out.splitlines() if len(line) >= 80]
    assert not wide, f"tracewatch {tool} --help has lines of 80 columns or more: {wide}"


def test_the_cli_lists_every_tool(capsys):
    from tracewatch import cli

    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for tool, (_module, summary) in TOOLS.items():
        assert f"  {tool}" in out and summary in out


# -- without root: on a file, or a misuse said in one line -----------------------------------------


def _file_runs(tmp_path: Path) -> dict[str, tuple[list[str], Callable[[int, str, str], None]]]:
    """Per tool: argv over the fixture (or a file of this test), and what must hold of (rc, out, err).

    The live-only tools (record, flight) and the function tools, which find no
    uprobe events in the fixtures, are run into a usage or input error: the
    one-line error policy is part of what every tool must get right.
    """
    trace = str(fixture_path(FIXTURE))
    script = tmp_path / "count.py"
    script.write_text(COUNT_SCRIPT)

    def ok(first_line_starts: str | None = None, contains: str | None = None):  # noqa: ANN202
        def check(rc: int, out: str, err: str) -> None:
            assert rc == 0, err
            if first_line_starts is not None:
                assert out.startswith(first_line_starts), out[:200]
            if contains is not None:
                assert contains in out, out[-500:]
        return check

    def one_line_error(words: str):  # noqa: ANN202
        def check(rc: int, out: str, err: str) -> None:
            lines = [ln for ln in err.splitlines() if ln.startswith("tracewatch: error:")]
            assert rc == 2 and len(lines) == 1 and words in lines[0], err
        return check

    def counted(rc: int, out: str, err: str) -> None:
        assert rc == 0, err
        count = int(out.split("sched_switch ", 1)[1].split()[0])
        assert count > 0, out

    def cleaned(rc: int, out: str, err: str) -> None:
        # dumps cut short by killed recorders elsewhere on the machine may be removed too
        assert rc == 0 and ("nothing to clean up" in err or out.startswith("removed ")), (rc, out, err)

    # no recording of uprobe events among the fixtures: the function tools must say so in one line
    no_probes = one_line_error("no uprobe events in this recording")
    return {
        "report": ([trace], ok(first_line_starts="cpus=", contains="sched_switch")),
        "run": ([str(script), "-i", trace], counted),
        "record": (["-e", "sched:sched_switch", "-o", str(tmp_path / "x.dat"), "--compression", "zstd"],
                   one_line_error("--compression needs --file-version 7")),
        "flight": ([str(script), "--trigger", "sched:sched_switch", "--keep", "1M", "--out", str(tmp_path / "fr")],
                   one_line_error("not both")),
        "status": ([str(tmp_path / "no-such-dir")], one_line_error("no-such-dir")),
        "list": (["-i", trace, "-v", "sched:sched_switch"], ok(first_line_starts="sched:sched_switch\n",
                                                                contains="prev_pid")),
        "cleanup": (["--no-tracefs", "--out", str(tmp_path)], cleaned),
        "funccount": (["libc:malloc", "-i", trace], no_probes),
        "funclatency": (["libc:malloc", "-i", trace], no_probes),
        "calls": (["libc:malloc", "-i", trace], no_probes),
    }


def test_every_tool_has_a_smoke_run(tmp_path):
    assert set(_file_runs(tmp_path)) == set(TOOLS), "add the new tool to _file_runs (and _live_runs)"
    assert set(_live_runs(tmp_path, pid=1)) == set(TOOLS), "add the new tool to _live_runs"


@pytest.mark.parametrize("tool", list(TOOLS))
def test_tool_runs_on_a_file(tool, tmp_path, capsys):
    argv, check = _file_runs(tmp_path)[tool]
    check(*_run_tool(tool, argv, capsys))


@pytest.mark.parametrize("tool, argv, words", [
    ("funccount", ["libc:malloc", "-p", "1,2"], "-p 1,2: give one process"),
    ("funclatency", ["libc:malloc", "-p", "x"], "-p: not a pid: 'x'"),
    ("calls", ["libc:malloc", "-p", "1", "--", "true"], "give -p PID or -- COMMAND, not both"),
    ("record", ["-e", "sched:sched_switch", "-p", "12,x", "-o", "{tmp}/x.dat"], "-p: not a pid: 'x'"),
    ("record", ["-o", "{tmp}/x.dat"], "nothing to record"),
    ("flight", ["--keep", "1M", "--out", "{tmp}", "--count", "3"], "--count/--within/--per refine --trigger"),
])
def test_misuse_of_the_shared_options_is_one_line(tool, argv, words, tmp_path, capsys):
    rc, out, err = _run_tool(tool, [a.format(tmp=tmp_path) for a in argv], capsys)
    assert rc == 2 and out == "", (rc, out)
    assert len(err.splitlines()) == 1 and err.startswith(f"tracewatch: error: {words}"), err


# -- live, as root: each tool for 1 s in its own private instance ---------------------------------


def _live_unavailable() -> str | None:
    from tests.live.conftest import _live_unavailable as why_not

    return why_not()


def _uprobes_unavailable() -> str | None:
    from tracewatch.sources.tracefs import TraceFS

    return None if TraceFS().exists("uprobe_events") else "this kernel has no uprobes (no uprobe_events)"


def _live_runs(tmp_path: Path, pid: int) -> dict[str, tuple[list[str], Callable[[int, str, str], None]]]:
    """Per tool: argv of a 1 s live run (``pid``: a process that calls malloc), and the check."""
    script = tmp_path / "count.py"
    script.write_text(COUNT_SCRIPT)
    recorded = tmp_path / "x.dat"
    status_file = tmp_path / "fr" / "status.json"

    def ok(contains: str | None = None):  # noqa: ANN202
        def check(rc: int, out: str, err: str) -> None:
            assert rc == 0, err
            if contains is not None:
                assert contains in out, out[-500:]
        return check

    def counted(rc: int, out: str, err: str) -> None:
        assert rc == 0, err
        assert int(out.split("sched_switch ", 1)[1].split()[0]) > 0, out

    def readable_recording(rc: int, out: str, err: str) -> None:
        assert rc == 0, err
        assert _main("report")([str(recorded)]) == 0

    def flight_status_written(rc: int, out: str, err: str) -> None:
        assert rc == 0, err
        assert status_file.exists(), err

    function = ["libc:malloc", "-d", "1", "-p", str(pid)]
    return {
        "report": ([str(recorded)], ok()),  # what the live record run wrote
        "run": ([str(script), "-d", "1"], counted),
        "record": (["-e", "sched:sched_switch", "-d", "1", "-o", str(recorded)], readable_recording),
        "flight": (["--trigger", "sched:sched_switch: prev_pid == -1", "--keep", "1M", "--out",
                    str(tmp_path / "fr"), "-d", "1", "--status-file", str(status_file)], flight_status_written),
        "status": ([str(status_file)], ok(contains="dumps")),  # what the live flight run wrote
        "list": (["sched:*"], ok(contains="sched:sched_switch\n")),
        "cleanup": ([], ok()),
        "funccount": (function, ok(contains="FUNC")),
        "funclatency": (function, ok()),
        "calls": (function, ok()),
    }


#: the order of the live runs: report and status read what record and flight wrote
LIVE_ORDER = ["run", "record", "report", "flight", "status", "list", "cleanup", "funccount", "funclatency", "calls"]


@pytest.fixture
def malloc_caller():
    """A process that calls malloc all the time (bytearrays above pymalloc's 512 bytes)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time\nwhile True:\n bytearray(100000)\n time.sleep(0.001)"])
    try:
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_every_tool_runs_live_for_a_second(tmp_path, capsys, malloc_caller):
    why_not = _live_unavailable()
    if why_not:
        pytest.skip(why_not)
    from tests.live.conftest import leftovers

    assert sorted(LIVE_ORDER) == sorted(TOOLS), "add the new tool to LIVE_ORDER"
    runs = _live_runs(tmp_path, malloc_caller)
    no_uprobes = _uprobes_unavailable()
    before = set(leftovers())
    tried = []
    for tool in LIVE_ORDER:
        argv, check = runs[tool]
        if no_uprobes and argv[:1] == ["libc:malloc"]:
            continue
        rc, out, err = _run_tool(tool, argv, capsys)
        check(rc, out, err)
        left = leftovers(since=before)
        assert not left, f"tracewatch {tool} left {left} in the kernel"
        tried.append(tool)
    if no_uprobes:
        pytest.skip(f"the function tools were not run: {no_uprobes}")
    assert tried == LIVE_ORDER
