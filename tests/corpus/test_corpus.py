"""Every damaged input of the corpus (``mutations.CASES``) through ``report`` and ``run -i``.

Run in-process through ``tracewatch.cli.main``, each case either exits 0 having
printed only lines that the undamaged file gives too, or exits 2 with exactly
one ``tracewatch: error:`` line (and optionally a ``hint:`` line) that names the
file, and never a traceback (an internal error propagates out of main() and
fails the test).  Format damage must be named: the event and the field.
"""

from __future__ import annotations

import functools

import pytest

from tests.conftest import FIXTURES
from tests.corpus.mutations import CASES, Case
from tests.fuzz.test_fuzz_report import deadline  # a damaged input must not make a reader loop forever
from tracewatch import cli

pytestmark = pytest.mark.skipif(not (FIXTURES / "b_sched.v6.dat").exists(),
                                reason=f"fixtures missing in {FIXTURES}")

#: a handler per event: one line a damaged file can only get right or leave out
SCRIPT = """\
from tracewatch import on

@on("*")
def each(ev):
    fields = {f.name: getattr(ev, f.name) for f in ev.format_.fields}
    print(ev.common_ts, ev.common_cpu, ev.name_, sorted(fields.items()))
"""


def _tool(capsysbinary, argv: list[str]) -> tuple[int, list[str], str]:
    with deadline(120):
        rc = cli.main(argv)
    out, err = capsysbinary.readouterr()
    return rc, out.decode("utf-8", "surrogateescape").splitlines(), err.decode("utf-8", "replace")


@functools.lru_cache(maxsize=None)
def _undamaged(tool: str, fixture: str, script: str) -> frozenset[str]:
    """The lines ``tool`` prints for the undamaged fixture (trace-cmd's own report where stored)."""
    if tool == "report":
        stored = FIXTURES / (fixture.replace(".v7z", ".v6") + ".report.txt")
        return frozenset(stored.read_text(errors="surrogateescape").splitlines())
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert cli.main(["run", script, "-i", str(FIXTURES / fixture)]) == 0
    return frozenset(out.getvalue().splitlines())


def check(case: Case, path, tool: str, rc: int, out: list[str], err: str, good: frozenset[str]) -> None:
    assert "Traceback" not in err, err
    assert rc in (0, 2), err
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("tracewatch: error: ")]
    if rc == 2:
        assert len(errors) == 1, err
        assert str(path) in errors[0], err
        # after the error line, at most a hint; before it, only notes, warnings and the loss table
        after = lines[lines.index(errors[0]) + 1 :]
        assert len(after) <= 1 and all(l.startswith("hint: ") for l in after), err
    else:
        assert not errors, err
    if tool == "run" and errors:
        assert "each_event.py" not in errors[0], f"the damage is blamed on the script: {err}"
    if case.names is not None:
        assert rc == 2, f"{case.name}: damaged format not reported ({tool})"
        for word in case.names:
            assert word in errors[0], err
    wrong = [l for l in out if l not in good and not l.startswith("cpus=")]
    assert not wrong, f"{case.name} ({tool}): {len(wrong)} lines the undamaged file does not give: {wrong[:3]}"


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("corpus") / "each_event.py"
    p.write_text(SCRIPT)
    return str(p)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_report(case: Case, tmp_path, capsysbinary, script):
    path = tmp_path / f"{case.name}.dat"
    path.write_bytes(case.build(FIXTURES))
    rc, out, err = _tool(capsysbinary, ["report", str(path)])
    check(case, path, "report", rc, out, err, _undamaged("report", case.fixture, script))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_run(case: Case, tmp_path, capsysbinary, script):
    path = tmp_path / f"{case.name}.dat"
    path.write_bytes(case.build(FIXTURES))
    rc, out, err = _tool(capsysbinary, ["run", script, "-i", str(path)])
    check(case, path, "run", rc, out, err, _undamaged("run", case.fixture, script))


@pytest.mark.parametrize("how", ["chunks", "batches", "split"])
def test_file_source_gives_the_events_before_the_first_short_record(tmp_path, how):
    """A format whose field lies past its records' end: every event before the first such
    record is delivered, then the error, whichever way a FileSource is read."""
    from tracewatch.errors import TraceFormatError
    from tracewatch.sources.file import FileSource

    case = next(c for c in CASES if c.name == "prev-comm-offset-4090")
    path = tmp_path / "short.dat"
    path.write_bytes(case.build(FIXTURES))
    report = (FIXTURES / case.fixture).with_name(case.fixture + ".report.txt").read_text().splitlines()[1:]
    before = next(i for i, line in enumerate(report) if " sched_switch: " in line)
    assert before > 0
    got = 0
    with FileSource(str(path)) as source, pytest.raises(TraceFormatError) as err:
        if how == "chunks":
            for chunk in source.chunks():
                got += len(chunk)
        elif how == "batches":
            for batch in source.batches():
                got += len(batch)
        else:
            for batch, positions in source.split():
                got += len(batch)
                assert positions.max() < before
    assert got == before
    assert str(err.value).startswith(f"{path}: CPU ") and "event sched_switch" in str(err.value)
