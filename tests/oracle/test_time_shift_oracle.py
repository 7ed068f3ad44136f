"""A guest trace's TIME_SHIFT option (guest clock -> host clock per CPU) against trace-cmd.

trace-cmd report corrects every timestamp of a file that carries the option
(trace-input.c, timestamp_host_sync): the two samples around the time (the first two
before the first sample, the last two after the last one), the offset interpolated
between them or the earlier one's, the time scaled by ``scaling >> fraction``; one
sample: its offset only; CPUs the option does not list: unchanged.  Then TSC2NSEC and the
file offsets.  The written files here hit each of those cases on several CPUs, and
``tracewatch report`` must print them as trace-cmd does; a scalar port of trace-cmd's C
checks the vectorised arithmetic where trace-cmd's text cannot show it (wrap-around).
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tracewatch.formats.timeshift import FLAG_INTERPOLATE, TimeShift

#: raw guest times at which the samples were taken (unsorted: trace-cmd sorts them)
SAMPLE_TIMES = (2_000_000_000, 1_000_000_000, 3_500_000_000)
#: event times: before the first sample, at each sample, between them, after the last
EVENT_TIMES = (500_000_000, 1_000_000_000, 1_234_567_891, 1_999_999_500, 1_999_999_999, 2_000_000_000,
               2_000_000_001, 2_999_999_999, 3_500_000_000, 4_000_000_123)
#: where CPU 0's offset steps down (without interpolation): its shown times go back there
STEP_BACK = (1_999_999_500, 2_000_000_000)


def _cpu_samples(flags: int) -> list[list[tuple[int, int, int, int]]]:
    """Per CPU (time, offset, scaling, fraction) samples; CPU 3 of the file is not listed (kept as it is)."""
    samples = [
        # offset rising then falling (a negative slope rounds as C divides); clock a little slower;
        # a time given twice (the same sample: which copy trace-cmd's qsort keeps is unspecified)
        [(t, o, 1_000_003, 20) for t, o in zip(SAMPLE_TIMES + SAMPLE_TIMES[:1],
                                                (10_000_000_000, 10_000_000_777, 9_999_999_001, 10_000_000_000))],
        # negative offsets, clock a little faster
        [(t, o, (1 << 20) + 17, 20) for t, o in zip(SAMPLE_TIMES, (-300_000_333, -300_000_000, -299_999_000))],
    ]
    # a single sample (its offset only, its scaling unused), chosen so that CPU 2's event at the
    # step falls between CPU 0's two events around it in host time: where CPU 0 goes back,
    # trace-cmd's merge still takes each CPU's events in their order
    before, after = (_reference(t, samples[0], flags) for t in STEP_BACK)
    offset = (before + after) // 2 - (STEP_BACK[0] + 2)
    samples.append([(1_500_000_000, offset, 3, 1)])
    return samples


def _time_shift_option(samples: list[list[tuple[int, int, int, int]]], flags: int, *, fractions: bool) -> bytes:
    """TIME_SHIFT option data as trace-cmd writes it (little-endian); old layout without fractions."""
    out = struct.pack("<QII", 0x1234_5678_9ABC_DEF0, flags, len(samples))
    for cpu in samples:
        out += struct.pack("<I", len(cpu))
        for column in range(3):
            out += b"".join(struct.pack("<q", s[column]) for s in cpu)
    if fractions:
        for cpu in samples:
            out += b"".join(struct.pack("<q", s[3]) for s in cpu)
    return out


def _reference(ts: int, samples: list[tuple[int, int, int, int]], flags: int) -> int:
    """timestamp_host_sync of trace-input.c 3.1.6, one timestamp, in 64-bit C arithmetic."""
    mask = (1 << 64) - 1

    def s64(v: int) -> int:
        v &= mask
        return v - (1 << 64) if v >> 63 else v

    def c_div(a: int, b: int) -> int:
        q = abs(a) // abs(b)
        return q if (a < 0) == (b < 0) else -q

    by_time: dict[int, tuple[int, int, int, int]] = {}
    for s in sorted(samples, key=lambda s: s[0]):
        by_time.setdefault(s[0], s)
    ss = list(by_time.values())

    def calc(lo: tuple[int, int, int, int], hi: tuple[int, int, int, int]) -> int:
        if flags & FLAG_INTERPOLATE:
            delta = s64(hi[0] - lo[0])
            offset = s64(s64(s64(ts) - lo[0]) * s64(hi[1] - lo[1]))
            cor = s64(lo[1] + c_div(s64(offset + c_div(delta, 2)), delta))
        else:
            cor = lo[1]
        scaled = ((ts * (lo[2] & mask)) & mask) >> lo[3]
        return (scaled + cor) & mask  # ts - llabs(cor) or ts + cor: the same modulo 2**64

    if len(ss) == 1:
        return (ts + ss[0][1]) & mask
    n = len(ss)
    if n == 2 or ts <= ss[0][0] & mask:
        pair = (ss[0], ss[1])
    elif ts >= ss[-1][0] & mask:
        pair = (ss[-2], ss[-1])
    else:
        lo, hi = 0, n - 1
        mid = (lo + hi) // 2
        while lo <= hi:
            if ts < ss[mid][0] & mask:
                hi = mid - 1
            elif ts > ss[mid][0] & mask:
                lo = mid + 1
            else:
                break
            mid = (lo + hi) // 2
        pair = (ss[mid], ss[mid + 1])
    return calc(*pair)


@pytest.mark.parametrize("flags", [0, FLAG_INTERPOLATE])
def test_vectorised_correction_is_trace_cmds_arithmetic(flags: int) -> None:
    # random samples and times, wide enough that products wrap in 64 bits and offsets go negative
    rng = np.random.default_rng(15)
    for trial in range(40):
        n = int(rng.integers(1, 7))
        big = trial % 2 == 1
        times = rng.integers(0, 2**62 if big else 10**10, n).tolist()
        if n > 2:
            times[1] = times[0]  # a repeated time
        samples = [(t, int(rng.integers(-(2**62) if big else -(10**10), 2**62 if big else 10**10)),
                    int(rng.integers(1, 2**40 if big else 2**21)), int(rng.integers(0, 40 if big else 21)))
                   for t in times]
        shift = TimeShift.parse(_time_shift_option([samples], flags, fractions=True), little=True)
        assert shift is not None
        ts = rng.integers(0, 2**63 if big else 2 * 10**10, 200, dtype=np.int64).astype(np.uint64)
        ts[:len(times)] = np.array(times, np.int64).astype(np.uint64)  # exactly at the samples too
        got = shift.apply(ts, 0).tolist()
        assert got == [_reference(int(t), samples, flags) for t in ts.tolist()]
        # a CPU the option does not list keeps its times
        assert shift.apply(ts, 1) is ts


def test_short_option_is_refused_as_trace_cmd_refuses_it() -> None:
    from tracewatch.formats.timeshift import TimeShiftFormatError

    whole = _time_shift_option(_cpu_samples(FLAG_INTERPOLATE), FLAG_INTERPOLATE, fractions=True)
    with pytest.raises(TimeShiftFormatError):
        TimeShift.parse(whole[:40], little=True)
    assert TimeShift.parse(whole[:15], little=True) is None  # trace-cmd ignores it


def _tracewatch_report(path: Path, raw: bool) -> str:
    done = subprocess.run([sys.executable, "-m", "tracewatch", "report", *(["--raw"] if raw else []), str(path)],
                          capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode("utf-8", "surrogateescape")


def _write_pair(tmp_path: Path, flags: int, fractions: bool, tsc2nsec: bool, version: int) -> tuple[Path, Path]:
    """(host file, guest file): the same pages of 4 CPUs, the guest file with a TIME_SHIFT option."""
    from tests.oracle.test_raw_fields_oracle import FUNCTION_FORMAT, FUNCTION_KALLSYMS
    from tests.oracle.written_traces import base_meta, write_trace
    from tracewatch.formats.tracedat import OPT_TIME_SHIFT, OPT_TSC2NSEC
    from tracewatch.testing.page_builder import PageBuilder

    samples = _cpu_samples(flags)
    if not flags:
        before, after = (_reference(t, samples[0], flags) for t in STEP_BACK)
        assert before > after  # the premise: CPU 0's host times go back at the step
    cpus = len(samples) + 1
    pages = {cpu: PageBuilder() for cpu in range(cpus)}
    for cpu, builder in pages.items():
        for n, ts in enumerate(EVENT_TIMES):
            ip = 0xFFFFFFFF81000000 + ((cpu + n) % 10) * 0x1000 + 0x10
            builder.add(ts + cpu, struct.pack("<HBBiQQ", 1, 0, 0, 100 + cpu, ip, 0xFFFFFFFF81000010))
    extra = [(OPT_TSC2NSEC, struct.pack("<IIQ", 735842807, 31, 0))] if tsc2nsec else []
    # an x86-tsc clock: without TSC2NSEC the time column is the plain count, every ns visible
    meta = dataclasses.replace(base_meta(), ftrace_formats=[FUNCTION_FORMAT], event_formats={},
                               kallsyms=FUNCTION_KALLSYMS, trace_clock="[x86-tsc] local")
    compression = "zstd" if version == 7 else None
    shift = (OPT_TIME_SHIFT, _time_shift_option(samples, flags, fractions=fractions))
    host = write_trace(tmp_path / "host.dat", pages, meta=meta, version=version, compression=compression,
                       extra_options=extra)
    guest = write_trace(tmp_path / "guest.dat", pages, meta=meta, version=version, compression=compression,
                        extra_options=[*extra, shift])
    return host, guest


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd is not installed")
@pytest.mark.parametrize("flags,fractions,tsc2nsec,version", [
    (FLAG_INTERPOLATE, True, False, 6),
    (0, True, False, 7),
    (FLAG_INTERPOLATE, True, True, 7),
    (FLAG_INTERPOLATE, False, False, 6),  # the older option, without fraction bits
])
def test_guest_times_match_trace_cmd(tmp_path: Path, flags: int, fractions: bool, tsc2nsec: bool,
                                     version: int) -> None:
    from tests.oracle.written_traces import trace_cmd_text

    host, guest = _write_pair(tmp_path, flags, fractions, tsc2nsec, version)
    for raw in (False, True):
        theirs = trace_cmd_text(guest, raw)
        assert theirs != trace_cmd_text(host, raw)  # the premise: trace-cmd applied the shift
        assert _tracewatch_report(guest, raw) == theirs


@pytest.mark.parametrize("flags", [0, FLAG_INTERPOLATE])
def test_every_merge_path_shows_the_shifted_times(tmp_path: Path, flags: int) -> None:
    # the per-type index and the merge in parts give index()'s events, times and order
    from tests.oracle.test_print_fmt_oracle import _reader

    host, guest = _write_pair(tmp_path, flags, True, False, 6)
    merged = _reader(guest).index()
    assert not np.array_equal(merged.ts, _reader(host).index().ts)  # the premise
    typed = _reader(guest).type_index()
    assert typed.total == len(merged)
    for k in range(len(typed.type_id)):
        rows = typed.rows(k)
        pos = typed.pos[rows]
        assert np.array_equal(typed.cpu[rows], merged.cpu[pos])
        assert np.array_equal(typed.ts[rows].astype(np.uint64), merged.ts[pos])
    parts = list(_reader(guest).merged_parts(3, whole_bytes=0, window_pages=1))
    assert np.array_equal(np.concatenate([p.ts for p in parts]), merged.ts)
    assert np.array_equal(np.concatenate([p.cpu for p in parts]), merged.cpu)
