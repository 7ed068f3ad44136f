"""TraceDatReader.merged_parts (a file merged a window of pages at a time, memory bounded by the
windows) gives exactly index(): order, lost-event counts, damage and the error raised."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, fixture_path, raw_pages_meta
from tracewatch.errors import TraceFormatError
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.formats.tracedat_writer import write_tracedat
from tracewatch.testing import PageBuilder, make_payload

NAMES = ["a_syscalls.v6.dat", "b_sched.v6.dat", "c_markers.v6.dat", "e_mixed.v6.dat", "e_mixed.v7z.dat"]
FIELDS = ("cpu", "ts", "offset", "length", "type_id", "missed_before")
# (pages per window, events per part): one page at a time and tiny parts, then the defaults
SHAPES = [(1, 7), (2, 333), (512, 262_144)]


def _same_as_index(path: Path) -> None:
    for kg in (False, True):
        try:
            full_reader = TraceDatReader(path)
        except TraceFormatError:
            return
        try:
            full, full_error = full_reader.index(keep_going=kg), None
        except TraceFormatError as e:
            full, full_error = e.partial, str(e)  # type: ignore[attr-defined]
        for window_pages, max_events in SHAPES:
            parts, error = [], None
            try:
                for part in TraceDatReader(path).merged_parts(max_events, keep_going=kg, window_pages=window_pages):
                    assert 0 < len(part) <= max_events
                    parts.append(part)
            except TraceFormatError as e:
                error = str(e)
            assert error == full_error, (kg, window_pages)
            for name in FIELDS:
                got = np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0)
                assert got.tolist() == getattr(full, name).tolist(), (name, kg, window_pages, max_events)
            if parts:
                assert [str(d) for d in parts[0].damage] == [str(d) for d in full.damage]


@pytest.mark.parametrize("name", NAMES)
def test_fixtures_merged_in_windows_equal_the_whole_merge(name: str) -> None:
    _same_as_index(fixture_path(name))


@pytest.mark.parametrize("seed", range(12))
def test_damaged_fixtures_merged_in_windows_equal_the_whole_merge(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    name = NAMES[seed % len(NAMES)]
    data = bytearray(fixture_path(name).read_bytes())
    spans = [(d.file_offset, d.file_size) for d in TraceDatReader(FIXTURES / name).buffer.cpus if d.file_size]
    off, size = rng.choice(spans)
    if seed % 3 == 0:
        data = data[: off + rng.randrange(size)]  # truncated
    elif seed % 3 == 1:
        for _ in range(rng.randint(1, 12)):
            data[off + rng.randrange(size)] = rng.randrange(256)  # bytes changed
    else:
        at = off + rng.randrange(size) // 4096 * 4096
        data[at : at + 4096] = bytes(4096)  # a page zeroed
    p = tmp_path / "d.dat"
    p.write_bytes(bytes(data))
    _same_as_index(p)


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_cpus_with_ties_losses_and_times_going_back(tmp_path: Path, seed: int) -> None:
    # uneven CPUs (one empty), many equal timestamps across CPUs, lost-event marks (counted
    # and not), a stream whose time goes backwards: what the greedy merge must keep
    rng = random.Random(seed)
    pages: dict[int, list[bytes]] = {}
    for cpu in range(4):
        b = PageBuilder()
        t = 1000
        for _page in range(0 if cpu == 2 else rng.randint(1, 9)):
            b.begin_page(t, missed=rng.choice([0, 0, 0, -1, rng.randint(1, 99)]))
            for _ in range(rng.randint(0, 60)):
                if b.room < 40:
                    break
                t += rng.choice([0, 0, 1, 5, 40])
                if seed % 2 and rng.random() < 0.03:
                    t -= rng.randint(1, 200)  # time going back: an absolute stamp
                    b.absolute(t)
                b.event(make_payload(rng.choice([1, 2, 3]), 8), t - b.now)
            t += rng.randint(0, 30)
        pages[cpu] = [b.build()] if b.pages else []
    path = tmp_path / "synthetic.dat"
    write_tracedat(path, raw_pages_meta(), pages, cpus=4)
    merged = TraceDatReader(path).index()
    assert len(merged) > 0 and len(set(merged.ts.tolist())) > 10
    assert (merged.missed_before != 0).any() or seed % 3 == 2
    _same_as_index(path)


def _chunks(src) -> tuple[list[tuple], str | None]:
    rows, error = [], None
    try:
        for chunk in src.chunks():
            rows.extend(zip(chunk.cpu.tolist(), chunk.ts.tolist(), chunk.type_id.tolist(),
                            chunk.missed_before.tolist()))
    except TraceFormatError as e:
        error = str(e)
    return rows, error


@pytest.mark.parametrize("seed", range(4))
def test_file_source_chunks_the_same_whole_or_in_windows(tmp_path: Path, seed: int) -> None:
    from tracewatch.sources.file import FileSource

    rng = random.Random(seed)
    name = NAMES[seed % len(NAMES)]
    data = bytearray(fixture_path(name).read_bytes())
    if seed % 2:
        spans = [(d.file_offset, d.file_size) for d in TraceDatReader(FIXTURES / name).buffer.cpus if d.file_size]
        off, size = rng.choice(spans)
        data = data[: off + rng.randrange(size)]
    p = tmp_path / "f.dat"
    p.write_bytes(bytes(data))
    for kg in (False, True):
        whole = FileSource(str(p), keep_going=kg, chunk_events=1000)
        windows = FileSource(str(p), keep_going=kg, chunk_events=1000, whole_bytes=0, window_pages=2)
        assert _chunks(whole) == _chunks(windows)
        assert [str(d) for d in whole.damage] == [str(d) for d in windows.damage]
        assert whole.lost_events() == windows.lost_events()


def test_scripts_print_the_same_over_a_file_merged_whole_or_in_windows(tmp_path: Path) -> None:
    import contextlib
    import io

    from tracewatch.script.runner import ScriptRunner
    from tracewatch.sources.file import FileSource

    script = tmp_path / "s.py"
    script.write_text(
        "from tracewatch import on, on_batch, at_end, Map\n"
        "per_event, per_batch = Map(int), Map(int)\n"
        "@on('sched:sched_switch')\n"
        "def sw(ev):\n"
        "    per_event[ev.prev_comm, ev.next_pid] += 1\n"
        "@on_batch('sched:*')\n"
        "def b(batch):\n"
        "    per_batch.add_counts(batch.common_pid)\n"
        "@at_end\n"
        "def end():\n"
        "    print(sorted(per_event.items()))\n"
        "    print(sorted(per_batch.items()))\n")
    batch_only = tmp_path / "b.py"
    batch_only.write_text(
        "from tracewatch import on_batch, at_end, Map\n"
        "m = Map(int)\n"
        "@on_batch('sched:*')\n"
        "def b(batch):\n"
        "    m.add_counts((batch.common_cpu, batch.common_pid))\n"
        "@at_end\n"
        "def end():\n"
        "    print(sorted(m.items()))\n")
    path = str(fixture_path("b_sched.v6.dat"))
    for s in (script, batch_only):
        outs = []
        for kw in ({}, {"whole_bytes": 0, "window_pages": 1}):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), FileSource(path, chunk_events=500, **kw) as src:
                ScriptRunner(str(s)).run(src)
            outs.append(out.getvalue())
        assert outs[0] == outs[1] and outs[0].count("[(") >= 1


def test_batches_of_a_file_too_big_to_index_whole_are_the_same_events() -> None:
    from tracewatch.sources.file import FileSource

    path = str(fixture_path("e_mixed.v6.dat"))

    def rows(src) -> list[tuple]:
        out = []
        for b in src.batches("syscalls:*,block:*,irq:*,timer:*"):
            out.extend(zip([b.format_.full_name] * len(b), b.common_ts.tolist(), b.common_pid.tolist()))
        return sorted(out)

    whole = rows(FileSource(path, chunk_events=999))
    assert len(whole) > 2000
    assert rows(FileSource(path, chunk_events=999, whole_bytes=0, window_pages=2)) == whole
