"""trace.dat writer: files built from raw pages must read back, in trace-cmd and in tracewatch, as the originals.

The oracle is the stored output of ``trace-cmd report [-R]`` in the shared
fixtures: raw trace_pipe_raw pages written by us must report exactly like
``raw-pages/pages.v7.dat`` (which trace-cmd built from the same pages), and
every fixture rewritten through :meth:`TraceMeta.from_reader` must report like
itself.  The trace-cmd half of each check is skipped when trace-cmd is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, raw_pages_meta
from tracewatch.errors import TraceFormatError
from tracewatch.formats import tracedat_writer
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.formats.tracedat_writer import TraceDatWriter, TraceMeta, write_tracedat
from tracewatch.tools import report

RAW_PAGES = FIXTURES / "raw-pages"
PAGE = 4096

needs_fixtures = pytest.mark.skipif(not RAW_PAGES.is_dir(), reason="shared fixtures not present")
TRACE_CMD = shutil.which("trace-cmd")


def trace_cmd_compressions() -> set[str]:
    """Compression algorithms the installed trace-cmd can read (``trace-cmd list -c``)."""
    if not TRACE_CMD:
        return set()
    out = subprocess.run([TRACE_CMD, "list", "-c"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        names.add(line.strip().split(",")[0])
    return names


def raw_pages() -> dict[int, bytes]:
    return {cpu: (RAW_PAGES / f"cpu{cpu}.raw").read_bytes() for cpu in (0, 1)}


def tracewatch_report(path: Path, raw: bool, capsysbinary) -> bytes:
    capsysbinary.readouterr()
    status = report.main(["-R", str(path)] if raw else [str(path)])
    out = capsysbinary.readouterr()
    assert status == 0, out.err.decode(errors="replace")
    return out.out


def trace_cmd_report(path: Path, raw: bool) -> bytes:
    args = [TRACE_CMD, "report"] + (["-R"] if raw else []) + [str(path)]
    done = subprocess.run(args, capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr == b"", f"trace-cmd warned about {path.name}: {done.stderr!r}"
    return done.stdout


def check_reports(path: Path, expected_report: Path, expected_raw: Path, capsysbinary, *,
                  compression: str | None = None) -> None:
    """tracewatch's and trace-cmd's report and report -R of ``path`` equal the stored texts."""
    assert tracewatch_report(path, True, capsysbinary) == expected_raw.read_bytes()
    assert tracewatch_report(path, False, capsysbinary) == expected_report.read_bytes()
    if not TRACE_CMD:
        pytest.skip("trace-cmd is not installed: only tracewatch's reports were compared")
    if compression and compression not in trace_cmd_compressions():
        pytest.skip(f"this trace-cmd cannot read {compression}: only tracewatch's reports were compared")
    assert trace_cmd_report(path, True) == expected_raw.read_bytes()
    assert trace_cmd_report(path, False) == expected_report.read_bytes()


FORMS = [pytest.param(6, None, id="v6"), pytest.param(7, None, id="v7"),
         pytest.param(7, "zstd", id="v7-zstd"), pytest.param(7, "zlib", id="v7-zlib")]


# -- (1) raw trace_pipe_raw pages -> trace.dat ------------------------------------

@needs_fixtures
@pytest.mark.parametrize("version, compression", FORMS)
def test_raw_pages_report_like_trace_cmds_own_file(tmp_path, capsysbinary, version, compression):
    out = tmp_path / "pages.dat"
    write_tracedat(out, raw_pages_meta(), {cpu: [data] for cpu, data in raw_pages().items()},
                   version=version, compression=compression)
    with TraceDatReader(out) as r:
        assert (r.version, r.compression, r.cpus, r.page_size) == (version, compression, 2, PAGE)
        for cpu, data in raw_pages().items():
            assert r.cpu_buffer(cpu)[0].tobytes() == data  # pages copied, not re-encoded
    check_reports(out, RAW_PAGES / "pages.v7.dat.report.txt", RAW_PAGES / "pages.v7.dat.raw.txt",
                  capsysbinary, compression=compression)


@needs_fixtures
def test_pages_may_come_interleaved_one_page_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(tracedat_writer, "SPOOL_MEMORY_BYTES", 3 * PAGE)  # spill to temporary files too
    whole = tmp_path / "whole.dat"
    pieces = tmp_path / "pieces.dat"
    pages = raw_pages()
    write_tracedat(whole, raw_pages_meta(), {cpu: [data] for cpu, data in pages.items()})
    with TraceDatWriter(pieces, raw_pages_meta(), 2) as w:
        for i in range(0, len(pages[0]), PAGE):
            for cpu in (1, 0):
                page = pages[cpu][i : i + PAGE]
                # every accepted form: bytes, memoryview, a 1-D and a (n, page) uint8 array
                w.add_pages(cpu, [page, memoryview(page), np.frombuffer(page, np.uint8),
                                  np.frombuffer(page, np.uint8).reshape(1, PAGE)][i // PAGE % 4])
        assert w.data_sizes == [len(pages[0]), len(pages[1])]
    assert pieces.read_bytes() == whole.read_bytes()


@needs_fixtures
def test_cpus_without_pages_are_written_empty(tmp_path, capsysbinary):
    pages = raw_pages()
    for version in (6, 7):
        out = tmp_path / f"sparse{version}.dat"
        write_tracedat(out, raw_pages_meta(), {1: [pages[1]]}, cpus=3, version=version)
        with TraceDatReader(out) as r:
            assert r.cpus == 3
            assert [len(r.cpu_buffer(c)[0]) for c in range(3)] == [0, len(pages[1]), 0]
        text = tracewatch_report(out, True, capsysbinary)
        assert text.startswith(b"cpus=3\n")
        expected = [ln for ln in (RAW_PAGES / "pages.v7.dat.raw.txt").read_bytes().split(b"\n")[1:]
                    if b" [001] " in ln]
        assert text.split(b"\n")[1:-1] == expected
        if TRACE_CMD:
            assert trace_cmd_report(out, True) == text


# -- (2) rewriting existing files ------------------------------------------------

FIXTURE_FILES = ["a_syscalls.v6", "b_sched.v6", "c_markers.v6", "e_mixed.v6", "e_mixed.v7z"]


@needs_fixtures
@pytest.mark.parametrize("version, compression", [pytest.param(6, None, id="v6"),
                                                  pytest.param(7, "zstd", id="v7-zstd")])
@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_rewritten_fixture_reports_like_the_original(tmp_path, capsysbinary, name, version, compression):
    src = FIXTURES / f"{name}.dat"
    out = tmp_path / "rewritten.dat"
    with TraceDatReader(src) as r:
        meta = TraceMeta.from_reader(r)
        buffers = {cpu: r.cpu_buffer(cpu)[0].tobytes() for cpu in range(r.cpus)}
        write_tracedat(out, meta, {cpu: [b] for cpu, b in buffers.items()}, cpus=r.cpus,
                       version=version, compression=compression)
    with TraceDatReader(out) as again:
        assert TraceMeta.from_reader(again) == meta  # nothing lost or changed beside the pages
        assert {cpu: again.cpu_buffer(cpu)[0].tobytes() for cpu in range(again.cpus)} == buffers
    stem = FIXTURES / name.replace(".v7z", ".v6")
    check_reports(out, Path(f"{stem}.dat.report.txt"), Path(f"{stem}.dat.raw.txt"), capsysbinary,
                  compression=compression)


# -- (4) atomic writes and errors ------------------------------------------------

def tiny_meta() -> TraceMeta:
    return raw_pages_meta() if RAW_PAGES.is_dir() else TraceMeta(header_page="", header_event="")


def test_an_exception_inside_the_with_block_writes_nothing(tmp_path):
    out = tmp_path / "t.dat"
    with pytest.raises(RuntimeError):
        with TraceDatWriter(out, tiny_meta(), 1) as w:
            w.add_pages(0, bytes(PAGE))
            raise RuntimeError("capture failed")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "t.dat"
    out.write_bytes(b"previous trace")

    def half_written(self, out_file):
        out_file.raw(b"\x17\x08\x44tracing6\0")
        raise OSError(28, "No space left on device", str(self.path))

    monkeypatch.setattr(TraceDatWriter, "_write_v6", half_written)
    w = TraceDatWriter(out, tiny_meta(), 1)
    w.add_pages(0, bytes(PAGE))
    with pytest.raises(OSError):
        w.close()
    assert out.read_bytes() == b"previous trace"
    assert [p.name for p in tmp_path.iterdir()] == ["t.dat"]  # the temporary file is gone


@needs_fixtures
def test_the_file_appears_only_at_close_with_ordinary_permissions(tmp_path):
    out = tmp_path / "t.dat"
    w = TraceDatWriter(out, tiny_meta(), 2)
    w.add_pages(0, raw_pages()[0])
    assert not out.exists()
    w.close()
    assert out.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(ValueError):
        w.add_pages(0, bytes(PAGE))


def test_bad_input_is_refused_naming_the_file(tmp_path):
    out = tmp_path / "t.dat"
    w = TraceDatWriter(out, tiny_meta(), 2)
    with pytest.raises(TraceFormatError, match=r"t\.dat.*CPU 1.*not a whole number of 4096-byte pages"):
        w.add_pages(1, bytes(PAGE + 10))
    with pytest.raises(ValueError, match="CPU 2 out of range"):
        w.add_pages(2, bytes(PAGE))
    w.abort()
    assert not out.exists()
    with pytest.raises(ValueError, match="needs trace.dat version 7"):
        TraceDatWriter(out, tiny_meta(), 1, compression="zstd")
    with pytest.raises(ValueError, match="not supported"):
        TraceDatWriter(out, tiny_meta(), 1, version=7, compression="lz4")
    with pytest.raises(OSError) as e:
        TraceDatWriter(tmp_path / "missing" / "t.dat", tiny_meta(), 1)
    assert "missing" in str(e.value)


# -- metadata from a tracefs -----------------------------------------------------

@needs_fixtures
def test_from_tracefs_reads_shared_files_from_the_top_and_the_rest_from_the_instance(tmp_path):
    top = tmp_path / "tracing"
    shutil.copytree(RAW_PAGES / "events", top / "events")
    (top / "saved_cmdlines").write_bytes((RAW_PAGES / "saved_cmdlines").read_bytes())
    (top / "printk_formats").write_text('0xffffffff81000000 : "hello %d\\n"\n')
    inst = top / "instances" / "tw"
    (inst / "events").mkdir(parents=True)
    shutil.copytree(RAW_PAGES / "events" / "sched", inst / "events" / "sched")
    shutil.copytree(RAW_PAGES / "events" / "raw_syscalls", inst / "events" / "raw_syscalls")
    (inst / "trace_clock").write_text("local [global] counter\n")
    (inst / "buffer_subbuf_size_kb").write_text("8\n")
    for cpu in (0, 1):
        (inst / "per_cpu" / f"cpu{cpu}").mkdir(parents=True)
        (inst / "per_cpu" / f"cpu{cpu}" / "stats").write_text(f"entries: {cpu}\n")
    kallsyms = RAW_PAGES / "kallsyms.subset"

    meta = TraceMeta.from_tracefs(inst, [("sched", "sched_switch"), ("raw_syscalls", "sys_enter")],
                                  kallsyms_path=kallsyms)
    ref = raw_pages_meta()
    assert (meta.header_page, meta.header_event, meta.ftrace_formats) == (
        ref.header_page, ref.header_event, ref.ftrace_formats)
    assert meta.event_formats == {
        "sched": [(RAW_PAGES / "events/sched/sched_switch/format").read_text()],
        "raw_syscalls": [(RAW_PAGES / "events/raw_syscalls/sys_enter/format").read_text()]}
    assert (meta.clock, meta.page_size, meta.kallsyms, meta.cmdlines) == (
        "global", 8192, ref.kallsyms, ref.cmdlines)
    assert meta.printk_formats.startswith("0xffffffff81000000")
    assert meta.cpustats == {0: "entries: 0\n", 1: "entries: 1\n"}

    every = TraceMeta.from_tracefs(inst, kallsyms_path=None)
    assert sorted(every.event_formats) == ["raw_syscalls", "sched"]
    assert len(every.event_formats["sched"]) == 5 and every.kallsyms == ""


def test_clock_is_taken_from_a_name_or_the_trace_clock_file_text():
    meta = TraceMeta(header_page="", header_event="")
    assert (meta.clock, meta.trace_clock_text) == ("local", "[local]")
    meta.trace_clock = "[mono] local global\n"
    assert (meta.clock, meta.trace_clock_text) == ("mono", "[mono] local global\n")
