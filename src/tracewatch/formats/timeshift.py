"""The TIME_SHIFT option of guest traces: guest clock to host clock, as trace-cmd applies it.

A trace recorded in a KVM guest by ``trace-cmd record --proxy``/``agent`` carries, per guest
CPU, samples taken while tracing: at guest time ``time`` the host clock was ``offset`` ns
ahead, with a clock ratio ``scaling >> fraction``.  trace-cmd (trace-input.c,
timestamp_host_sync / timestamp_correction_calc) corrects every timestamp of the file with
them before anything else (before TSC2NSEC and the DATE/OFFSET options), and ``report``
always does so when the option is there.  This module reproduces that integer arithmetic
on whole arrays of timestamps, wrap-around and C's truncating division included.

Option layout (the file's byte order)::

    u64 peer trace id, u32 flags (bit 0: interpolate), u32 CPU count,
    per CPU: u32 count, count x s64 time, count x s64 offset, count x s64 scaling,
    then (optional, newer trace-cmd) per CPU: count x s64 fraction bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: TRACECMD_TSYNC_FLAG_INTERPOLATE: the offset is interpolated between the two samples around a time.
FLAG_INTERPOLATE = 0x1


class TimeShiftFormatError(ValueError):
    """The option's data is shorter than its counts say (trace-cmd refuses such a file)."""


@dataclass(frozen=True)
class CpuSamples:
    """One guest CPU's samples, sorted by time with equal times dropped but the first (as trace-cmd keeps them)."""

    time: np.ndarray  # int64
    offset: np.ndarray  # int64
    scaling: np.ndarray  # int64
    fraction: np.ndarray  # int64


@dataclass(frozen=True)
class TimeShift:
    """A parsed TIME_SHIFT option: the host session it syncs to, its flags and each CPU's samples."""

    peer_trace_id: int
    flags: int
    cpus: tuple[CpuSamples, ...]

    @classmethod
    def parse(cls, data: bytes | memoryview, little: bool) -> "TimeShift | None":
        """The option's samples; None where trace-cmd ignores the option (shorter than 16 bytes)."""
        data = bytes(data)
        if len(data) < 16:
            return None
        end = "<" if little else ">"
        order = "little" if little else "big"
        peer = int.from_bytes(data[:8], order)
        flags = int.from_bytes(data[8:12], order)
        pos = 12

        def take(n: int, what: str) -> bytes:
            nonlocal pos
            if pos + n > len(data):
                raise TimeShiftFormatError(f"TIME_SHIFT option: {what} runs past the option's "
                                           f"{len(data)} bytes")
            chunk = data[pos : pos + n]
            pos += n
            return chunk

        def s32(what: str) -> int:
            return int.from_bytes(take(4, what), order, signed=True)

        def s64s(count: int, what: str) -> np.ndarray:
            return np.frombuffer(take(8 * count, what), dtype=end + "i8").astype(np.int64)

        cpu_count = s32("CPU count")
        if cpu_count < 0:
            raise TimeShiftFormatError(f"TIME_SHIFT option: negative CPU count {cpu_count}")
        columns = []
        for cpu in range(cpu_count):
            count = s32(f"CPU {cpu} sample count")
            if count < 0:
                raise TimeShiftFormatError(f"TIME_SHIFT option: CPU {cpu} has a negative sample count {count}")
            columns.append([s64s(count, f"CPU {cpu} times"), s64s(count, f"CPU {cpu} offsets"),
                            s64s(count, f"CPU {cpu} scalings")])
        # the fraction bits came later in trace-cmd: present only if bytes remain
        has_fraction = pos < len(data)
        for cpu, col in enumerate(columns):
            n = len(col[0])
            col.append(s64s(n, f"CPU {cpu} fractions") if has_fraction else np.zeros(n, np.int64))
        cpus = []
        for time, offset, scaling, fraction in columns:
            # qsort by time (not stable: among equal times trace-cmd keeps whichever comes first,
            # normally the only one), then drop repeated times
            order_ = np.argsort(time, kind="stable")
            time, offset, scaling, fraction = time[order_], offset[order_], scaling[order_], fraction[order_]
            keep = np.ones(len(time), bool)
            keep[1:] = time[1:] != time[:-1]
            cpus.append(CpuSamples(time[keep], offset[keep], scaling[keep], fraction[keep]))
        return cls(peer, flags, tuple(cpus))

    def apply(self, ts: np.ndarray, cpu: int) -> np.ndarray:
        """Raw guest timestamps (uint64) of one CPU, as host times (timestamp_host_sync)."""
        if cpu >= len(self.cpus) or len(ts) == 0:
            return ts
        s = self.cpus[cpu]
        n = len(s.time)
        if n == 0:
            # trace-cmd reads past its empty sample array here; keeping the time is the sane reading
            return ts
        ts = np.asarray(ts, dtype=np.uint64)
        if n == 1:
            # one sample: its offset only, no scaling
            return ts + s.offset[:1].view(np.uint64)[0]
        # the pair of samples around each time: the first two before the first sample, the last
        # two after the last one, else the sample at or before it and the next one (the
        # binary search's result); times compare unsigned, as in C
        lo = np.searchsorted(s.time.view(np.uint64), ts, side="right") - 1
        np.clip(lo, 0, n - 2, out=lo)
        with np.errstate(over="ignore"):
            min_offset = s.offset[lo]
            if self.flags & FLAG_INTERPOLATE:
                min_time, max_time = s.time[lo], s.time[lo + 1]
                delta = max_time - min_time  # > 0: times are sorted and distinct
                scaled = (ts.view(np.int64) - min_time) * (s.offset[lo + 1] - min_offset)
                correction = min_offset + _c_divide(scaled + delta // 2, delta)
            else:
                correction = min_offset
            shifted = (ts * s.scaling[lo].view(np.uint64)) >> s.fraction[lo].view(np.uint64)
            return shifted + correction.view(np.uint64)


def _c_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b of int64 as C divides (truncating toward zero; b > 0 here)."""
    q = a // b
    q += (a - q * b != 0) & (a < 0)
    return q
