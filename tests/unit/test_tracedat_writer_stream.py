"""StreamingTraceDatWriter: the file ``record`` writes as it goes, finished on close, never a false trace before.

The finished file must be byte for byte what the batch writer makes of the
same pages (whose output the oracle tests check against trace-cmd); before
close, nothing is under the final name and the partial file is refused by
readers; a write that fails keeps the whole pages before it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, raw_pages_meta
from tracewatch.errors import TraceFormatError
from tracewatch.formats import tracedat_writer
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.formats.tracedat_writer import (
    StreamingTraceDatWriter,
    check_output,
    directory_mode,
    make_private_directory,
    write_tracedat,
)

RAW_PAGES = FIXTURES / "raw-pages"
PAGE = 4096
TRACE_CMD = shutil.which("trace-cmd")
needs_fixtures = pytest.mark.skipif(not RAW_PAGES.is_dir(), reason="shared fixtures not present")


def raw_pages() -> dict[int, bytes]:
    return {cpu: (RAW_PAGES / f"cpu{cpu}.raw").read_bytes() for cpu in (0, 1)}


def stream(path: Path, pages: dict[int, bytes], *, step_pages: int = 3, **kw) -> StreamingTraceDatWriter:
    """Pages fed in small steps, CPUs interleaved, as a live reader hands them over."""
    w = StreamingTraceDatWriter(path, raw_pages_meta(), 2, **kw)
    step = step_pages * PAGE
    longest = max(len(b) for b in pages.values())
    for at in range(0, longest, step):
        for cpu, data in pages.items():
            if at < len(data):
                w.add_pages(cpu, data[at : at + step])
    return w


@needs_fixtures
@pytest.mark.parametrize("version, compression", [(6, None), (7, None), (7, "zstd"), (7, "zlib")])
def test_the_finished_file_is_the_batch_writers_file(tmp_path, version, compression, monkeypatch):
    monkeypatch.setattr(tracedat_writer, "MOVE_BYTES", 5 * PAGE)  # several moves per CPU
    pages = raw_pages()
    batch, streamed = tmp_path / "batch.dat", tmp_path / "streamed.dat"
    write_tracedat(batch, raw_pages_meta(), {cpu: [b] for cpu, b in pages.items()}, version=version,
                   compression=compression)
    w = stream(streamed, pages, version=version, compression=compression)
    assert not streamed.exists()
    w.close()
    assert streamed.read_bytes() == batch.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.dat", "streamed.dat"]
    assert w.data_sizes == [len(pages[0]), len(pages[1])]
    reader = TraceDatReader(str(streamed))
    assert w.last_event_ts == int(reader.index().ts.max())


@needs_fixtures
def test_before_close_the_partial_file_is_no_trace(tmp_path):
    out = tmp_path / "x.dat"
    w = stream(out, raw_pages())
    (partial,) = tmp_path.iterdir()
    assert partial.name.startswith(".x.dat.") and partial.name.endswith(".partial")
    assert partial.read_bytes()[:10] == bytes(10)  # the magic is written last
    with pytest.raises(TraceFormatError):
        TraceDatReader(str(partial))
    if TRACE_CMD:
        assert subprocess.run([TRACE_CMD, "report", str(partial)], capture_output=True).returncode != 0
    w.abort()
    assert list(tmp_path.iterdir()) == []


@needs_fixtures
def test_a_killed_writer_leaves_no_trace_under_the_name(tmp_path):
    # SIGKILL while pages are being written: the spool files go with the process, the partial is no trace
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.conftest import raw_pages_meta
        from tracewatch.formats.tracedat_writer import StreamingTraceDatWriter
        w = StreamingTraceDatWriter({str(tmp_path / 'x.dat')!r}, raw_pages_meta(), 2)
        w.add_pages(0, open({str(RAW_PAGES / 'cpu0.raw')!r}, "rb").read())
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=os.environ.copy())
    assert done.returncode == -signal.SIGKILL, done.stderr.decode(errors="replace")
    assert not (tmp_path / "x.dat").exists()
    for path in tmp_path.iterdir():
        assert path.name.endswith(".partial")
        with pytest.raises(TraceFormatError):
            TraceDatReader(str(path))


@needs_fixtures
def test_a_failed_write_keeps_the_whole_pages_before_it(tmp_path, monkeypatch):
    pages = raw_pages()
    out = tmp_path / "x.dat"
    w = stream(out, {0: pages[0][: 4 * PAGE]})
    real_write = os.write
    calls = []

    def half_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: PAGE + 100])  # part of a page reaches the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tracedat_writer.os, "write", half_then_full)
    with pytest.raises(OSError) as e:
        w.add_pages(0, pages[0][4 * PAGE : 8 * PAGE])
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(tracedat_writer.os, "write", real_write)
    assert w.data_sizes[0] == 5 * PAGE  # the page that fitted whole; the part of the next is cut off
    w.close()
    expected = tmp_path / "expected.dat"
    write_tracedat(expected, raw_pages_meta(), {0: [pages[0][: 5 * PAGE]]}, cpus=2)
    assert out.read_bytes() == expected.read_bytes()


@needs_fixtures
def test_modes_are_exact_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        for mode in (0o600, 0o644):
            out = tmp_path / f"m{mode:o}.dat"
            stream(out, raw_pages(), mode=mode).close()
            assert out.stat().st_mode & 0o777 == mode
    finally:
        os.umask(old)


def test_check_output_names_what_is_wrong(tmp_path):
    with pytest.raises(OSError) as e:
        check_output(tmp_path)
    assert e.value.errno == errno.EISDIR
    with pytest.raises(OSError) as e:
        check_output(tmp_path / "missing" / "x.dat")
    assert e.value.errno == errno.ENOENT and e.value.filename == str(tmp_path / "missing")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as e:
        check_output(fifo)
    assert "not a regular file" in str(e.value)
    fifo.unlink()
    (tmp_path / "stdout").symlink_to("/proc/self/fd/1")  # what /dev/stdout is
    with pytest.raises(OSError) as e:
        check_output(tmp_path / "stdout")
    assert "not a regular file" in str(e.value)
    (tmp_path / "stdout").unlink()
    check_output(tmp_path / "x.dat")
    assert list(tmp_path.iterdir()) == []  # the probe is gone


def test_private_directories(tmp_path):
    assert directory_mode(0o600) == 0o700
    assert directory_mode(0o640) == 0o750
    target = tmp_path / "a" / "b"
    make_private_directory(target)
    assert target.stat().st_mode & 0o777 == 0o700
