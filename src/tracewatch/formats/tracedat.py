"""trace.dat reader: trace-cmd's file format, versions 6 and 7.

Layout (trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v6.5.txt and .v7.5.txt)::

    "\\x17\\x08\\x44tracing" "6\\0"|"7\\0"  endian(1) long_size(1) page_size(u32)
    v6: header_page, header_event, ftrace formats, event systems, kallsyms,
        printk formats, saved cmdlines, cpu count, "options  \\0" options,
        "flyrecord\\0" (offset, size) per CPU, trace_clock text; then the pages
    v7: compression "name\\0version\\0", u64 offset of the first options
        section; sections (16-byte header: id, flags, string id, size), each
        possibly compressed as one block; options point at the other sections;
        a BUFFER option per instance gives its per-CPU (offset, size); data
        sections may be compressed in chunks

:class:`TraceDatReader` identifies the input from its first bytes, reads the
fixed header when opened and everything else when asked (cached): formats,
symbols, per-CPU pages (mmapped; decompressed for compressed v7 data), the
per-CPU page walk (:mod:`.ring_page`) and the merged time-ordered index (the
compiled merges of :mod:`tracewatch.kernels.merge`).

Damage in the event data (a truncated file, a corrupt page, a bad compressed
chunk) raises :class:`TraceFormatError` naming the file offset, CPU and page;
the error carries everything decoded before the damage (``err.partial``).
With ``keep_going=True`` damaged pages are skipped and listed instead.
"""

from __future__ import annotations

import mmap
import os
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from collections.abc import Mapping
from typing import Any, Callable, Container, Generator, Iterable, Iterator

import numpy as np

from ..errors import TraceFormatError
from ..kernels.group import count_runs, split_runs
from ..kernels.merge import merge_events, merge_kernel, merge_runs_kernel
from .event_format import EventFormat, HeaderPage, parse_event_format
from .ring_page import PageDamage, PageIndex, recycler, walk_buffers, walk_pages
from .symbols import Cmdlines, KernelSymbols, TraceSymbols, parse_printk_formats
from .timeshift import TimeShift, TimeShiftFormatError

__all__ = [
    "TRACEDAT_MAGIC",
    "TraceDatReader",
    "Record",
    "MergedIndex",
    "TypeIndex",
    "BufferInstance",
    "CpuLostEvents",
    "identify_input",
]

TRACEDAT_MAGIC = b"\x17\x08\x44tracing"

# v7 option / section ids (trace-cmd.dat.v7.5.txt).
OPT_DONE = 0
OPT_DATE = 1
OPT_CPUSTAT = 2
OPT_BUFFER = 3
OPT_TRACECLOCK = 4
OPT_UNAME = 5
OPT_HOOK = 6
OPT_OFFSET = 7
OPT_CPUCOUNT = 8
OPT_VERSION = 9
OPT_PROCMAPS = 10
OPT_TRACEID = 11
OPT_TIME_SHIFT = 12
OPT_GUEST = 13
OPT_TSC2NSEC = 14
OPT_STRINGS = 15
OPT_HEADER_INFO = 16
OPT_FTRACE_EVENTS = 17
OPT_EVENT_FORMATS = 18
OPT_KALLSYMS = 19
OPT_PRINTK = 20
OPT_CMDLINES = 21
OPT_BUFFER_TEXT = 22
OPT_BTF_FILE = 23
OPT_LAST_BOOT_INFO = 24
OPT_MODULES_FILE = 25

SEC_FL_COMPRESS = 1

# More CPUs than Linux's NR_CPUS limit means a corrupt count, not a big machine.
_MAX_CPUS = 1 << 13

# Options whose data is a NUL-terminated text, by the key they get in ``options``.
_TEXT_OPTIONS = {
    OPT_DATE: "date", OPT_TRACECLOCK: "traceclock", OPT_UNAME: "uname", OPT_HOOK: "hook",
    OPT_OFFSET: "offset", OPT_VERSION: "version", OPT_PROCMAPS: "procmaps",
    OPT_LAST_BOOT_INFO: "last_boot_info",
}
_SECTION_OPTIONS = {
    OPT_HEADER_INFO: "header info", OPT_FTRACE_EVENTS: "ftrace event formats",
    OPT_EVENT_FORMATS: "event formats", OPT_KALLSYMS: "kallsyms", OPT_PRINTK: "printk formats",
    OPT_CMDLINES: "saved cmdlines", OPT_BTF_FILE: "BTF", OPT_MODULES_FILE: "modules",
}

# Clocks whose timestamps are nanoseconds, shown as usecs by trace-cmd (extract_trace_clock).
NS_CLOCKS = ("local", "global", "uptime", "perf", "mono", "mono_raw", "boot", "tai", "x86-tsc-nsec")

# First bytes of inputs people hand us by mistake, and what they are.
_OTHER_MAGICS = [
    (b"PERFILE2", "a perf.data file (perf record), not a trace.dat; use `perf script`"),
    (b"PERFFILE", "an old perf.data file, not a trace.dat"),
    (b"\x1f\x8b", "a gzip-compressed file; decompress it first"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file; decompress it first"),
    (b"BZh", "a bzip2-compressed file; decompress it first"),
    (b"\xfd7zXZ\x00", "an xz-compressed file; decompress it first"),
    (b"\x7fELF", "an ELF binary, not a trace.dat"),
    (b"\xc1\x1f\xfc\xc1", "a CTF (LTTng) stream, not a trace.dat"),
    (b"\xc1\xfc\x1f\xc1", "a CTF (LTTng) stream, not a trace.dat"),
    (b"PK\x03\x04", "a zip archive, not a trace.dat"),
    (b"# tracer:", "the text of tracefs `trace`, not a trace.dat"),
    (b"cpus=", "text output of `trace-cmd report`, not a trace.dat"),
]


def identify_input(head: bytes) -> str | None:
    """Why ``head`` (a file's first bytes) is not a trace.dat, or None if it may be one."""
    if not head:
        return "empty file, not a trace.dat"
    if head.startswith(TRACEDAT_MAGIC):
        return None
    if TRACEDAT_MAGIC.startswith(head):
        return f"truncated trace.dat: only {len(head)} bytes"
    for magic, what in _OTHER_MAGICS:
        if head.startswith(magic):
            return f"this is {what}"
    shown = head[:8].hex(" ")
    return f"not a trace.dat file (starts with {shown}; a trace.dat starts with 17 08 44 'tracing')"


@dataclass(frozen=True)
class CpuData:
    """Where one CPU's pages are in the file (compressed stream for compressed data)."""

    cpu: int
    file_offset: int
    file_size: int


@dataclass(frozen=True)
class BufferInstance:
    """One trace instance's data: the top buffer has name ``""``.

    ``section_offset`` is the v7 BUFFER FLYRECORD section (None in v6);
    ``latency`` marks a BUFFER_TEXT (latency text) buffer, which has no pages.
    """

    name: str
    clock: str | None
    page_size: int
    cpus: tuple[CpuData, ...]
    section_offset: int | None = None
    compressed: bool = False
    latency: bool = False


@dataclass(slots=True)
class Record:
    """One event, for slow paths and tests.

    ``payload`` is the event record (starting with ``common_type``), ``ts`` its
    time in ns, ``fmt`` its format (None for an id the file does not describe),
    ``missed_before`` the events the kernel lost on this CPU just before it:
    0 none, -1 some (count unknown), N > 0 (trace-cmd's ``missed_events``).
    """

    cpu: int
    ts: int
    payload: bytes
    fmt: EventFormat | None
    missed_before: int = 0


@dataclass(eq=False)
class MergedIndex:
    """All CPUs' events in trace-cmd report's order, as numpy arrays.

    ``cpu`` (int32), ``ts`` (uint64 ns, file offsets applied), ``offset``
    (int64, into that CPU's buffer from :meth:`TraceDatReader.cpu_buffer`),
    ``length`` (int32), ``type_id`` (uint16), ``missed_before`` (int64, see
    :class:`Record`).  ``damage`` lists the damaged places that were skipped
    (keep-going) or where the index was cut.
    """

    cpu: np.ndarray
    ts: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    type_id: np.ndarray
    missed_before: np.ndarray
    damage: list[TraceFormatError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, sel: np.ndarray | slice) -> "MergedIndex":
        return MergedIndex(self.cpu[sel], self.ts[sel], self.offset[sel], self.length[sel],
                           self.type_id[sel], self.missed_before[sel], list(self.damage))


#: files with more bytes of event pages than this are merged a window of pages at a time
#: (:meth:`TraceDatReader.merged_parts`), so that memory does not grow with the file
WHOLE_MERGE_BYTES = 256 << 20


@dataclass(eq=False)
class _CpuWalk:
    """What the limits and losses of one CPU's events depend on: its damage, counts and
    missed-events flags, from a whole walk (:meth:`of_index`) or from windows of pages
    (``TraceDatReader._walk_summary``, which keeps no per-event arrays)."""

    n_events: int
    n_pages: int
    trailing_bytes: int
    #: each damaged page, with the number of the CPU's events before the page after it
    damage: list[tuple[PageDamage, int]]
    #: for those numbers (and ``n_events``): the time of the event just before
    ts_at: dict[int, int]
    first_page_ts: int
    page_missed: np.ndarray
    #: windowed walks: the most events one window held
    max_window_events: int = 0

    @classmethod
    def of_index(cls, idx: PageIndex) -> "_CpuWalk":
        n, pf = len(idx), idx.page_first
        damage = [(d, int(pf[d.page + 1]) if d.page + 1 < len(pf) else n) for d in idx.damage]
        ts_at = {k: int(idx.ts[k - 1]) for k in {nxt for _, nxt in damage} | {n} if k > 0}
        return cls(n, len(pf), idx.trailing_bytes, damage, ts_at,
                   int(idx.page_ts[0]) if len(idx.page_ts) else 0, idx.page_missed)


@dataclass(eq=False)
class TypeIndex:
    """The merged index grouped by event type: what per-type batches are made of.

    ``type_id`` (int64, ascending) lists the types present (of those asked for);
    type ``type_id[k]``'s events are rows ``bounds[k]:bounds[k + 1]`` of the
    per-row arrays, in :class:`MergedIndex` order: ``pos`` (int64, the event's
    position in that order), ``cpu`` (int32), ``ts`` (int64 ns, file offsets
    applied), ``offset`` (int64), ``length`` (int32).  ``total`` counts the
    events of the merged order (every type); ``damage`` as in MergedIndex.
    """

    type_id: np.ndarray
    bounds: np.ndarray
    pos: np.ndarray
    cpu: np.ndarray
    ts: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    total: int
    damage: list[TraceFormatError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pos)

    def rows(self, k: int, start: int = 0, stop: int | None = None) -> slice:
        """The rows of type ``type_id[k]`` whose merged position is in ``[start, stop)``."""
        lo, hi = int(self.bounds[k]), int(self.bounds[k + 1])
        if start <= 0 and (stop is None or stop >= self.total):
            return slice(lo, hi)
        pos = self.pos[lo:hi]
        a = lo + int(np.searchsorted(pos, start, side="left")) if start > 0 else lo
        b = lo + int(np.searchsorted(pos, stop, side="left")) if stop is not None else hi
        return slice(a, b)


def _group_runs(src: tuple[np.ndarray, ...], runs: tuple[np.ndarray, ...], total: int,
                wanted: Container[int]) -> TypeIndex:
    """A :class:`TypeIndex` of the events ``runs`` (cpu, start, end) pick from ``src`` (ts,
    offset, length, type_id), keeping the types in ``wanted``."""
    ts, off, ln, ty = src
    rc, rs, re = runs
    part = recycler.empty(4 << 16, np.int64)
    part[:] = 0
    ty = ty if ty.dtype == np.uint16 else ty.astype(np.uint16)
    counts = recycler.empty(1 << 16, np.int64)
    count_runs(ty, rs, re, part, counts)
    present = np.flatnonzero(counts)
    ids = np.array([t for t in present.tolist() if t in wanted], np.int64)
    bounds = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(counts[ids], out=bounds[1:])
    rows = int(bounds[-1])
    which = recycler.empty(1 << 16, np.int32)
    which[:] = -1
    which[ids] = np.arange(len(ids), dtype=np.int32)
    new = recycler.empty
    out = TypeIndex(ids, bounds, new(rows, np.int64), new(rows, np.int32), new(rows, np.int64),
                    new(rows, np.int64), new(rows, np.int32), total)
    if rows:
        ts = ts.view(np.int64) if ts.dtype == np.uint64 else ts.astype(np.int64, copy=False)
        split_runs(ts, off.astype(np.int64, copy=False), ln.astype(np.int32, copy=False), ty,
                   rc, rs, re, which, bounds[:-1].copy(), out.pos, out.cpu, out.ts, out.offset, out.length)
    return out


@dataclass(frozen=True)
class CpuLostEvents:
    """Events the kernel dropped on one CPU, from the pages' missed-events flags.

    ``lost`` sums the stored counts; ``unknown_pages`` counts pages flagged
    with events missing whose count was not stored.
    """

    cpu: int
    lost: int
    pages_with_loss: int
    unknown_pages: int


class _Cursor:
    """Bounds-checked reads of file-endian numbers and strings from a byte view.

    ``base`` is the file offset of ``data[0]``; for decompressed data pass
    ``fixed_offset`` (the compressed block's file offset) so errors still name
    a place in the file.
    """

    __slots__ = ("data", "pos", "base", "path", "order", "fixed_offset", "what")

    def __init__(self, data: Any, *, path: str, base: int = 0, little: bool = True, pos: int = 0,
                 fixed_offset: int | None = None, what: str = "") -> None:
        self.data = data
        self.pos = pos
        self.base = base
        self.path = path
        self.order = "little" if little else "big"
        self.fixed_offset = fixed_offset
        self.what = what

    def file_offset(self, pos: int | None = None) -> int:
        if self.fixed_offset is not None:
            return self.fixed_offset
        return self.base + (self.pos if pos is None else pos)

    def fail(self, message: str, pos: int | None = None) -> TraceFormatError:
        prefix = f"{self.what}: " if self.what else ""
        return TraceFormatError(prefix + message, path=self.path, offset=self.file_offset(pos))

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            have = len(self.data) - self.pos
            raise self.fail(f"{what} of {n} bytes runs past the end of the data ({have} bytes left)")
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), self.order)

    def u16(self, what: str) -> int:
        return self.uint(2, what)

    def u32(self, what: str) -> int:
        return self.uint(4, what)

    def u64(self, what: str) -> int:
        return self.uint(8, what)

    def cstr(self, what: str, limit: int = 4096) -> str:
        data = memoryview(self.data)
        end = min(len(data), self.pos + limit)
        chunk = bytes(data[self.pos : end])
        nul = chunk.find(b"\0")
        if nul < 0:
            raise self.fail(f"{what}: no terminating NUL within {len(chunk)} bytes")
        self.pos += nul + 1
        return chunk[:nul].decode("utf-8", "surrogateescape")

    def expect(self, literal: bytes, what: str) -> None:
        at = self.pos
        got = bytes(self.take(len(literal), what))
        if got != literal:
            raise self.fail(f"expected {what} {literal!r}, found {got!r}", at)

    def sized_text(self, size_bytes: int, what: str) -> tuple[str, int]:
        """A size word then that many bytes of text; returns (text, file offset of the text)."""
        size = self.uint(size_bytes, f"{what} size")
        at = self.file_offset()
        return bytes(self.take(size, what)).decode("utf-8", "surrogateescape"), at


def _cstring(data: bytes | memoryview) -> str:
    raw = bytes(data)
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "surrogateescape")


def _clock_from_trace_clock_text(text: str) -> str | None:
    """The selected clock in tracefs ``trace_clock`` text: ``[local] global ...``."""
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]") or None
    return None


class _Decompressor:
    """The file's compression algorithm, as trace-cmd writes blocks (zlib or zstd)."""

    def __init__(self, name: str, version: str, path: str) -> None:
        self.name = name
        self.version = version
        self.path = path
        if name == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdDecompressor()
        elif name != "zlib":
            raise TraceFormatError(f"unsupported compression {name!r} {version!r} (zlib and zstd are)",
                                   path=path)

    def block(self, data: bytes | memoryview, expected: int, at: int, what: str) -> bytes:
        """Decompress one block that should give ``expected`` bytes; ``at`` names it in errors.

        Output is produced incrementally and capped at ``expected + 1`` bytes, so a
        corrupt size word cannot make us allocate gigabytes.
        """
        try:
            if self.name == "zlib":
                dobj = zlib.decompressobj()
                out = dobj.decompress(bytes(data), expected + 1)
                if not dobj.eof and len(out) <= expected:
                    raise zlib.error("the compressed stream is cut short")
            else:
                with self._zstd.stream_reader(bytes(data)) as reader:
                    out = reader.read(expected + 1) if expected else reader.read(1)
        except Exception as e:  # zlib.error, zstandard.ZstdError: both mean corrupt data
            raise TraceFormatError(f"{what}: {self.name} data does not decompress ({e})",
                                   path=self.path, offset=at) from None
        if len(out) != expected:
            raise TraceFormatError(f"{what}: decompressed to {len(out)} bytes, header says {expected}",
                                   path=self.path, offset=at)
        return out


@dataclass
class _CpuPages:
    """One CPU's pages as walked: data, where it came from, and what went wrong."""

    cpu: int
    data: np.ndarray
    file_offset: int
    # compressed data: chunk starts in ``data`` and the file offsets of their chunk headers
    chunk_starts: np.ndarray | None = None
    chunk_file_offsets: np.ndarray | None = None
    # damage found while loading: (byte offset in data where valid data ends, error)
    load_damage: list[tuple[int, TraceFormatError]] = field(default_factory=list)


#: madvise(2) MADV_POPULATE_READ (Python's mmap module names it from 3.13 on)
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if hasattr(mmap.mmap, "madvise") else 0)


#: format texts already parsed, by (text, system): traces of one machine store the same texts
_PARSED: dict[tuple[str, str], EventFormat] = {}


def _parse_copy(fmt: EventFormat) -> EventFormat:
    return EventFormat(id=fmt.id, system=fmt.system, name=fmt.name, fields=list(fmt.fields), print_fmt=fmt.print_fmt)


def _peek_event_id(text: str) -> int | None:
    """The ID a format text declares, as :func:`parse_event_format` reads it (the last
    ``ID:`` line); None when it would not parse that far (no name: or ID: line, a bad ID)."""
    ev_id = None
    named = False
    for line in text.splitlines():
        if line.startswith("name:"):
            named = True
        elif line.startswith("ID:"):
            try:
                ev_id = int(line[3:].strip())
            except ValueError:
                return None
    return ev_id if named else None


class _LazyFormats(Mapping):
    """id -> EventFormat, each parsed on first lookup (see :attr:`TraceDatReader.formats`)."""

    def __init__(self, entries: dict, parse: Callable[[str, str, int], EventFormat]) -> None:
        self._entries = entries  # id -> EventFormat, or (text, system, file offset) not parsed yet
        self._parse = parse

    def __getitem__(self, ev_id: int) -> EventFormat:
        got = self._entries[ev_id]
        if isinstance(got, tuple):
            got = self._parse(*got)
            if got.id != ev_id:  # cannot happen: _peek_event_id reads the ID as the parser does
                raise TraceFormatError(f"event format ID {got.id} read as {ev_id}", path=None)
            self._entries[ev_id] = got
        return got

    def __contains__(self, ev_id: object) -> bool:
        return ev_id in self._entries

    def __iter__(self) -> Iterator[int]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<formats: {len(self._entries)} event types>"


class TraceDatReader:
    """A trace.dat file (trace-cmd versions 6 and 7), read lazily.

    Attributes read when opened: ``path``, ``version``, ``little_endian``,
    ``long_size`` (the kernel's, from header_page, as trace-cmd uses it),
    ``file_long_size`` (the header byte: user space's), ``page_size``,
    ``cpus``, ``options`` (dict: "uname", "version", "cpustat" (list),
    "traceclock", "cpucount", "traceid", ...), ``buffers`` (instances),
    ``compression``.  Read when first asked, then cached: ``header_page``,
    ``formats``, ``symbols``, ``trace_clock``, :meth:`cpu_buffer`,
    :meth:`cpu_index`, :meth:`index`.

    ``instance`` picks a trace instance's buffer (v7; default the top one);
    ``keep_going`` makes damaged pages be skipped instead of raising.
    """

    def __init__(self, path: str | os.PathLike[str], *, instance: str = "", keep_going: bool = False) -> None:
        self.path = os.fspath(path)
        self.keep_going = keep_going
        self.instance = instance
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise TraceFormatError(f"cannot open: {e.strerror}", path=self.path) from None
        try:
            self.file_size = os.fstat(fd).st_size
            head = os.pread(fd, 64, 0)
            why = identify_input(head)
            if why is not None:
                raise TraceFormatError(why, path=self.path, offset=0)
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self._data = np.frombuffer(self._map, dtype=np.uint8)
        self.options: dict[str, Any] = {"cpustat": []}
        #: a guest trace's TIME_SHIFT samples (guest clock -> host clock), applied to the top buffer's times
        self.time_shift: TimeShift | None = None
        self.buffers: list[BufferInstance] = []
        self._texts: dict[int, tuple[memoryview | bytes, int]] = {}  # v6: section id -> (payload, offset)
        self._section_offsets: dict[int, int] = {}  # v7: section id -> file offset of its header
        self._decompressor: _Decompressor | None = None
        self._trace_clock_text: str | None = None
        self._cpu_pages: dict[int, _CpuPages] = {}
        self._cpu_index: dict[int, PageIndex] = {}
        # per-event arrays of every CPU end to end, and each CPU's start, when walked together
        self._walked_together: tuple[tuple[np.ndarray, ...], np.ndarray] | None = None
        self._merged: dict[bool, MergedIndex] = {}
        #: per CPU, what merged_parts() learnt walking it (lost events without a whole walk)
        self._walk_summaries: list[_CpuWalk] | None = None
        self._typed: dict[tuple, TypeIndex] = {}
        self._read_initial_format()

    # -- opening -----------------------------------------------------------

    def _cursor(self, pos: int, what: str = "") -> _Cursor:
        return _Cursor(self._map, path=self.path, little=self.little_endian, pos=pos, what=what)

    def _read_initial_format(self) -> None:
        c = _Cursor(self._map, path=self.path, pos=len(TRACEDAT_MAGIC))
        version = c.cstr("version string", limit=16)
        if not version.isdigit():
            raise c.fail(f"bad version string {version!r}", len(TRACEDAT_MAGIC))
        self.version = int(version)
        if self.version not in (6, 7):
            raise TraceFormatError(f"trace.dat version {self.version} is not supported (6 and 7 are)",
                                   path=self.path, offset=len(TRACEDAT_MAGIC))
        endian = c.uint(1, "endianness byte")
        if endian not in (0, 1):
            raise c.fail(f"bad endianness byte {endian}", c.pos - 1)
        self.little_endian = endian == 0
        c.order = "little" if self.little_endian else "big"
        self.file_long_size = c.uint(1, "long size byte")
        if self.file_long_size not in (4, 8):
            raise c.fail(f"bad long size {self.file_long_size}", c.pos - 1)
        self.long_size = self.file_long_size
        self.page_size = c.u32("page size")
        if self.page_size < 64 or self.page_size & (self.page_size - 1):
            raise c.fail(f"bad page size {self.page_size}", c.pos - 4)
        self.compression: str | None = None
        if self.version >= 7:
            name = c.cstr("compression name", limit=64)
            cversion = c.cstr("compression version", limit=64)
            if name != "none":
                self.compression = name
                self._decompressor = _Decompressor(name, cversion, self.path)
            options_at = c.u64("options offset")
            self._read_v7_options(options_at)
            self._pick_buffer_v7()
        else:
            self._read_v6_headers(c)
        self.header_page  # cheap, and it fixes long_size as trace-cmd does

    # -- version 6 -----------------------------------------------------------

    def _read_v6_headers(self, c: _Cursor) -> None:
        """Walk the v6 header sequentially, remembering where each part is."""

        def mark(sid: int, start: int) -> None:
            self._texts[sid] = (memoryview(self._map)[start : c.pos], start)

        start = c.pos
        c.what = "header info"
        c.expect(b"header_page\0", "header_page tag")
        c.take(c.u64("header_page size"), "header_page text")
        c.expect(b"header_event\0", "header_event tag")
        c.take(c.u64("header_event size"), "header_event text")
        mark(OPT_HEADER_INFO, start)
        start = c.pos
        c.what = "ftrace event formats"
        for _ in range(c.u32("ftrace format count")):
            c.take(c.u64("format size"), "ftrace format")
        mark(OPT_FTRACE_EVENTS, start)
        start = c.pos
        c.what = "event formats"
        for _ in range(c.u32("event system count")):
            c.cstr("system name")
            for _ in range(c.u32("event count")):
                c.take(c.u64("format size"), "event format")
        mark(OPT_EVENT_FORMATS, start)
        for sid, size_bytes, what in ((OPT_KALLSYMS, 4, "kallsyms"), (OPT_PRINTK, 4, "printk formats"),
                                      (OPT_CMDLINES, 8, "saved cmdlines")):
            start = c.pos
            c.what = what
            c.take(c.uint(size_bytes, f"{what} size"), what)
            mark(sid, start)
        c.what = ""
        self.cpus = c.u32("CPU count")
        tag = bytes(c.take(10, "options/flyrecord tag"))
        has_clock = False
        if tag.startswith(b"options"):
            c.what = "options"
            while True:
                opt = c.u16("option id")
                if opt == OPT_DONE:
                    break
                size = c.u32("option size")
                data = c.take(size, f"option {opt}")
                has_clock |= opt == OPT_TRACECLOCK
                self._take_option(opt, data, c.file_offset() - size, v7=False)
            c.what = ""
            tag = bytes(c.take(10, "flyrecord tag"))
        if tag.startswith(b"latency"):
            self.buffers.append(BufferInstance("", None, self.page_size, (), latency=True))
            self.cpus = 0
            return
        if not tag.startswith(b"flyrecord"):
            raise c.fail(f"expected 'flyrecord' or 'latency', found {tag!r}", c.pos - 10)
        ncpu = self.options.get("cpucount", self.cpus)
        if ncpu > _MAX_CPUS:
            raise c.fail(f"CPU count {ncpu} is not believable")
        self.cpus = ncpu
        cpu_data = []
        c.what = "flyrecord CPU table"
        for cpu in range(ncpu):
            offset = c.u64(f"CPU {cpu} data offset")
            size = c.u64(f"CPU {cpu} data size")
            cpu_data.append(CpuData(cpu, offset, size))
        c.what = ""
        if has_clock:
            # trace-cmd writes the trace_clock file after the CPU table when it saved the option
            try:
                self._trace_clock_text, _ = c.sized_text(8, "trace_clock")
            except TraceFormatError:
                self._trace_clock_text = None  # trace-cmd falls back to "local" too
        self.buffers.insert(0, BufferInstance("", None, self.page_size, tuple(cpu_data)))
        self._buffer = self.buffers[0]
        if self.instance:
            raise TraceFormatError(f"instance {self.instance!r}: reading instances of a version 6 file "
                                   "is not supported", path=self.path)

    # -- options (both versions) ----------------------------------------------

    def _take_option(self, opt: int, data: memoryview, at: int, *, v7: bool) -> None:
        order = "little" if self.little_endian else "big"
        if opt in _TEXT_OPTIONS:
            self.options[_TEXT_OPTIONS[opt]] = _cstring(data)
        elif opt == OPT_CPUSTAT:
            self.options["cpustat"].append(_cstring(data))
        elif opt == OPT_CPUCOUNT and len(data) >= 4:
            self.options["cpucount"] = int.from_bytes(data[:4], order)
        elif opt == OPT_TRACEID and len(data) >= 8:
            self.options["traceid"] = int.from_bytes(data[:8], order)
        elif opt == OPT_TSC2NSEC and len(data) >= 16:
            self.options["tsc2nsec"] = (int.from_bytes(data[:4], order), int.from_bytes(data[4:8], order),
                                        int.from_bytes(data[8:16], order))
        elif opt == OPT_TIME_SHIFT:
            try:
                self.time_shift = TimeShift.parse(data, self.little_endian)
            except TimeShiftFormatError as e:
                # trace-cmd refuses the file too
                raise TraceFormatError(str(e), path=self.path, offset=at) from None
            # kept as it is too, so that a rewrite of the file (TraceMeta.from_reader) keeps it
            self.options.setdefault("other", []).append((opt, bytes(data)))
        elif opt in (OPT_BUFFER, OPT_BUFFER_TEXT):
            self.buffers.append(self._parse_buffer_option(opt, data, at, v7=v7))
        elif opt in _SECTION_OPTIONS and len(data) >= 8:
            self._section_offsets[opt] = int.from_bytes(data[:8], order)
        else:
            self.options.setdefault("other", []).append((opt, bytes(data)))

    def _parse_buffer_option(self, opt: int, data: memoryview, at: int, *, v7: bool) -> BufferInstance:
        c = _Cursor(data, path=self.path, base=at, little=self.little_endian, what="BUFFER option")
        offset = c.u64("buffer offset")
        name = c.cstr("buffer name")
        if not v7:
            return BufferInstance(name, None, self.page_size, (), section_offset=offset)
        clock = c.cstr("buffer clock")
        if opt == OPT_BUFFER_TEXT:
            return BufferInstance(name, clock, self.page_size, (), section_offset=offset, latency=True)
        page_size = c.u32("buffer page size")
        count = c.u32("buffer CPU count")
        cpus = []
        for _ in range(count):
            cpus.append(CpuData(c.u32("CPU id"), c.u64("CPU data offset"), c.u64("CPU data size")))
        return BufferInstance(name, clock, page_size, tuple(cpus), section_offset=offset)

    # -- version 7 -----------------------------------------------------------

    def _section_header(self, at: int, want: int | None, what: str) -> tuple[int, int, int]:
        """(flags, size, payload offset) of the section whose header is at ``at``."""
        if at + 16 > self.file_size:
            raise TraceFormatError(f"{what} section at offset {at:#x} is past the end of the file "
                                   f"({self.file_size:#x} bytes)", path=self.path, offset=at)
        c = self._cursor(at, what)
        sid = c.u16("section id")
        flags = c.u16("section flags")
        c.u32("section description")
        size = c.u64("section size")
        if want is not None and sid != want:
            raise c.fail(f"expected section id {want}, found {sid}", at)
        if c.pos + size > self.file_size:
            raise c.fail(f"section of {size} bytes runs past the end of the file ({self.file_size:#x} bytes)",
                         at)
        return flags, size, c.pos

    def _section_payload(self, at: int, want: int | None, what: str) -> tuple[bytes | memoryview, int | None]:
        """A section's payload, decompressed if needed; and its file base (None if decompressed)."""
        flags, size, pos = self._section_header(at, want, what)
        if not flags & SEC_FL_COMPRESS:
            return memoryview(self._map)[pos : pos + size], pos
        if self._decompressor is None:
            raise TraceFormatError(f"{what}: section is flagged compressed but the file names no compression",
                                   path=self.path, offset=at)
        c = self._cursor(pos, what)
        csize = c.u32("compressed size")
        usize = c.u32("uncompressed size")
        if csize > size - 8:
            raise c.fail(f"compressed size {csize} is larger than the section ({size} bytes)", pos)
        return self._decompressor.block(c.take(csize, "compressed block"), usize, pos, what), None

    def _read_v7_options(self, at: int) -> None:
        seen: set[int] = set()
        while at:
            if at in seen:
                raise TraceFormatError("options sections form a loop", path=self.path, offset=at)
            seen.add(at)
            payload, base = self._section_payload(at, OPT_DONE, "options")
            c = _Cursor(payload, path=self.path, base=base or 0, little=self.little_endian,
                        fixed_offset=None if base is not None else at, what="options")
            at = 0
            while True:
                opt = c.u16("option id")
                size = c.u32("option size")
                data = c.take(size, f"option {opt}")
                if opt == OPT_DONE:
                    if size < 8:
                        raise c.fail("DONE option shorter than 8 bytes")
                    at = int.from_bytes(data[:8], c.order)
                    break
                self._take_option(opt, data, c.file_offset() - size, v7=True)

    def _pick_buffer_v7(self) -> None:
        for b in self.buffers:
            if b.name == self.instance:
                self._buffer = b
                break
        else:
            names = ", ".join(repr(b.name) for b in self.buffers) or "none"
            raise TraceFormatError(f"no buffer named {self.instance!r} in the file (buffers: {names})",
                                   path=self.path)
        b = self._buffer
        if b.latency:
            self.cpus = 0
            return
        if b.section_offset is not None:
            flags, _, _ = self._section_header(b.section_offset, None, "buffer flyrecord")
            if flags & SEC_FL_COMPRESS:
                if self._decompressor is None:
                    raise TraceFormatError("flyrecord section is flagged compressed but the file names no "
                                           "compression", path=self.path, offset=b.section_offset)
                self._buffer = b = BufferInstance(b.name, b.clock, b.page_size, b.cpus, b.section_offset,
                                                  compressed=True)
        if b.page_size:
            if b.page_size < 64 or b.page_size % 64 or b.page_size > 1 << 27:
                raise TraceFormatError(f"buffer {b.name!r}: bad page size {b.page_size}", path=self.path,
                                       offset=b.section_offset)
            self.page_size = b.page_size
        self.cpus = max([self.options.get("cpucount", 0)] + [d.cpu + 1 for d in b.cpus])
        if self.cpus > _MAX_CPUS:
            raise TraceFormatError(f"buffer {b.name!r}: CPU number {self.cpus - 1} is not believable",
                                   path=self.path, offset=b.section_offset)

    # -- metadata sections -----------------------------------------------------

    def _meta_cursor(self, sid: int) -> _Cursor:
        what = _SECTION_OPTIONS[sid]
        if self.version < 7:
            payload, at = self._texts[sid]
            return _Cursor(payload, path=self.path, base=at, little=self.little_endian, what=what)
        if sid not in self._section_offsets:
            raise TraceFormatError(f"the file has no {what} section", path=self.path)
        at = self._section_offsets[sid]
        payload, base = self._section_payload(at, sid, what)
        return _Cursor(payload, path=self.path, base=base or 0, little=self.little_endian,
                       fixed_offset=None if base is not None else at, what=what)

    def _has_section(self, sid: int) -> bool:
        return sid in (self._texts if self.version < 7 else self._section_offsets)

    @cached_property
    def _header_texts(self) -> tuple[str, str]:
        c = self._meta_cursor(OPT_HEADER_INFO)
        c.expect(b"header_page\0", "header_page tag")
        page, _ = c.sized_text(8, "header_page")
        c.expect(b"header_event\0", "header_event tag")
        event, _ = c.sized_text(8, "header_event")
        return page, event

    @cached_property
    def header_page(self) -> HeaderPage:
        """The ring-buffer page layout (``events/header_page``)."""
        try:
            hp = HeaderPage.parse(self._header_texts[0])
        except (ValueError, TraceFormatError) as e:
            raise TraceFormatError(f"header_page: {e}", path=self.path) from None
        if hp.commit_size not in (4, 8):
            raise TraceFormatError(f"header_page commit size {hp.commit_size} is neither 4 nor 8",
                                   path=self.path)
        # trace-cmd: "The size field in the page is of type long, use that instead"
        self.long_size = hp.commit_size
        return hp

    @property
    def header_page_text(self) -> str:
        """The ``events/header_page`` text, verbatim (:attr:`header_page` is it parsed)."""
        return self._header_texts[0]

    @property
    def header_event(self) -> str:
        """The ``events/header_event`` text."""
        return self._header_texts[1]

    @cached_property
    def ftrace_format_texts(self) -> list[str]:
        """Each ``events/ftrace/*/format`` text the file stores, verbatim, in file order."""
        texts: list[str] = []
        if self._has_section(OPT_FTRACE_EVENTS):
            c = self._meta_cursor(OPT_FTRACE_EVENTS)
            for _ in range(c.u32("ftrace format count")):
                texts.append(c.sized_text(8, "ftrace format")[0])
        return texts

    @cached_property
    def event_format_texts(self) -> dict[str, list[str]]:
        """System -> each ``events/SYSTEM/*/format`` text the file stores, verbatim, in file order."""
        out: dict[str, list[str]] = {}
        if self._has_section(OPT_EVENT_FORMATS):
            c = self._meta_cursor(OPT_EVENT_FORMATS)
            for _ in range(c.u32("event system count")):
                system = c.cstr("system name")
                texts = out.setdefault(system, [])
                for _ in range(c.u32("event count")):
                    texts.append(c.sized_text(8, f"{system} event format")[0])
        return out

    @cached_property
    def formats(self) -> "Mapping[int, EventFormat]":
        """Every event format in the file by id: system "ftrace" and each event system.

        A read-only mapping that parses a format when it is first looked up (the
        ids are found up front), so a trace of a few event types does not pay for
        the hundreds of formats a file usually stores; a bad format raises its
        TraceFormatError when it is looked up (or its ID line when opened).
        """
        out: dict[int, EventFormat | tuple[str, str, int]] = {}
        if self._has_section(OPT_FTRACE_EVENTS):
            c = self._meta_cursor(OPT_FTRACE_EVENTS)
            for _ in range(c.u32("ftrace format count")):
                text, at = c.sized_text(8, "ftrace format")
                self._add_format(out, text, "ftrace", at)
        if self._has_section(OPT_EVENT_FORMATS):
            c = self._meta_cursor(OPT_EVENT_FORMATS)
            for _ in range(c.u32("event system count")):
                system = c.cstr("system name")
                for _ in range(c.u32("event count")):
                    text, at = c.sized_text(8, f"{system} event format")
                    self._add_format(out, text, system, at)
        return _LazyFormats(out, self._parse_format)

    def _add_format(self, out: dict, text: str, system: str, at: int) -> None:
        ev_id = _peek_event_id(text)
        if ev_id is None:  # no (good) name: or ID: line: parse now, which raises as it should
            fmt = self._parse_format(text, system, at)
            out[fmt.id] = fmt
        else:
            out[ev_id] = (text, system, at)

    def _parse_format(self, text: str, system: str, at: int) -> EventFormat:
        key = (text, system)
        done = _PARSED.get(key)
        if done is not None:
            # a fresh EventFormat (it caches per-object state) sharing the parsed, read-only fields
            return _parse_copy(done)
        try:
            fmt = parse_event_format(text, system, source=self.path)
            if len(_PARSED) >= 4096:
                _PARSED.clear()
            _PARSED[key] = fmt
            return _parse_copy(fmt)
        except TraceFormatError as e:
            raise TraceFormatError(f"{system} event format: {e.message}", path=self.path, offset=at) from None
        except (ValueError, IndexError) as e:
            raise TraceFormatError(f"{system} event format: {e}", path=self.path, offset=at) from None

    def _text_section(self, sid: int, size_bytes: int) -> str:
        if not self._has_section(sid):
            return ""
        c = self._meta_cursor(sid)
        text, _ = c.sized_text(size_bytes, _SECTION_OPTIONS[sid])
        return text

    @cached_property
    def kallsyms_text(self) -> str:
        return self._text_section(OPT_KALLSYMS, 4)

    @cached_property
    def printk_text(self) -> str:
        return self._text_section(OPT_PRINTK, 4)

    @cached_property
    def cmdlines_text(self) -> str:
        return self._text_section(OPT_CMDLINES, 8)

    @cached_property
    def symbols(self) -> TraceSymbols:
        """kallsyms, printk formats and saved cmdlines, for rendering."""
        return TraceSymbols(
            kallsyms=KernelSymbols.deferred(lambda: self.kallsyms_text),
            printk_formats=parse_printk_formats(self.printk_text),
            cmdlines=Cmdlines.parse(self.cmdlines_text),
            long_size=self.long_size,
            little_endian=self.little_endian,
        )

    @cached_property
    def trace_clock(self) -> str:
        """The clock the timestamps were taken with ("local" when the file does not say)."""
        for text in (self._trace_clock_text, self.options.get("traceclock")):
            if text:
                clock = _clock_from_trace_clock_text(text)
                if clock:
                    return clock
        return self._buffer.clock or "local"

    @property
    def timestamps_in_usecs(self) -> bool:
        """True when trace-cmd report shows times as seconds.usecs (ns clocks), else raw counts."""
        return "tsc2nsec" in self.options or self.trace_clock in NS_CLOCKS or self.trace_clock.startswith("mono")

    @property
    def buffer(self) -> BufferInstance:
        """The instance buffer this reader reads (the top one unless ``instance`` said otherwise)."""
        return self._buffer

    @property
    def data_bytes(self) -> int:
        """Bytes of event pages in the file, every CPU (as stored: compressed when compressed)."""
        return sum(d.file_size for d in self._buffer.cpus)

    @property
    def ts_offset(self) -> int:
        """ns added to every timestamp: the DATE (usecs) and OFFSET options, as trace-cmd adds them."""
        off = 0
        for key, scale in (("date", 1000), ("offset", 1)):
            if key in self.options:
                try:
                    off += int(self.options[key].strip(), 0) * scale
                except ValueError:
                    pass
        return off

    # -- CPU data --------------------------------------------------------------

    def _cpu_data(self, cpu: int) -> CpuData | None:
        for d in self._buffer.cpus:
            if d.cpu == cpu:
                return d
        return None

    def _load_cpu(self, cpu: int) -> _CpuPages:
        if cpu in self._cpu_pages:
            return self._cpu_pages[cpu]
        if not 0 <= cpu < self.cpus:
            raise ValueError(f"CPU {cpu} out of range (the file has {self.cpus})")
        d = self._cpu_data(cpu)
        if d is None or d.file_size == 0:
            pages = _CpuPages(cpu, np.zeros(0, np.uint8), d.file_offset if d else 0)
        elif self._buffer.compressed:
            pages = self._load_compressed_cpu(d)
        else:
            end = d.file_offset + d.file_size
            pages = _CpuPages(cpu, self._data[min(d.file_offset, self.file_size) : min(end, self.file_size)],
                              d.file_offset)
            if end > self.file_size:
                have = max(0, self.file_size - d.file_offset)
                err = TraceFormatError(
                    f"CPU {cpu} data ({d.file_size} bytes at {d.file_offset:#x}) runs past the end of the file: "
                    f"truncated after {have} bytes", path=self.path, offset=self.file_size, cpu=cpu,
                    hint="the file may be truncated; --keep-going reads what is there")
                pages.load_damage.append((have, err))
        self._cpu_pages[cpu] = pages
        return pages

    def _load_compressed_cpu(self, d: CpuData) -> _CpuPages:
        """Decompress one CPU's chunks; stop at the first bad chunk and note it."""
        assert self._decompressor is not None
        c = self._cursor(d.file_offset, f"CPU {d.cpu} compressed data")
        # The recorded size is trace-cmd's write_size from tracecmd_compress_copy_from: the chunks
        # (8-byte header + data each) but not the 4-byte chunk count before them, so the stream
        # ends 4 bytes after offset + size (e_mixed.v7z.dat: CPU 0 size 51491, stream 51495).
        # Files whose size also counts the chunk count read the same: the count drives the loop.
        end = min(d.file_offset + 4 + d.file_size, self.file_size)
        c.data = memoryview(self._map)[:end]
        out: list[bytes] = []
        starts: list[int] = []
        offsets: list[int] = []
        done = 0
        damage: list[tuple[int, TraceFormatError]] = []
        try:
            count = c.u32("chunk count")
            for i in range(count):
                at = c.pos
                zsize = c.u32("chunk compressed size")
                size = c.u32("chunk size")
                blob = c.take(zsize, f"chunk {i}")
                chunk = self._decompressor.block(blob, size, at, f"CPU {d.cpu} chunk {i}")
                starts.append(done)
                offsets.append(at)
                out.append(chunk)
                done += len(chunk)
        except TraceFormatError as e:
            damage.append((done, TraceFormatError(e.message, path=self.path, offset=e.offset, cpu=d.cpu)))
        data = np.frombuffer(b"".join(out), dtype=np.uint8) if out else np.zeros(0, np.uint8)
        return _CpuPages(d.cpu, data, d.file_offset, np.array(starts, np.int64), np.array(offsets, np.int64),
                         damage)

    def cpu_buffer(self, cpu: int) -> tuple[np.ndarray, int]:
        """That CPU's pages as a uint8 array, and the file offset of its first byte.

        For compressed data the array holds the decompressed pages and the
        offset is that of the CPU's compressed stream; :meth:`file_offset_of`
        maps a position in the array to the file.
        """
        pages = self._load_cpu(cpu)
        return pages.data, pages.file_offset

    def file_offset_of(self, cpu: int, buffer_offset: int) -> int:
        """The file offset holding byte ``buffer_offset`` of :meth:`cpu_buffer` (its chunk header if compressed)."""
        pages = self._load_cpu(cpu)
        if pages.chunk_starts is None:
            return pages.file_offset + buffer_offset
        if len(pages.chunk_starts) == 0:
            return pages.file_offset
        i = int(np.searchsorted(pages.chunk_starts, buffer_offset, side="right")) - 1
        return int(pages.chunk_file_offsets[max(i, 0)])

    def cpu_index(self, cpu: int) -> PageIndex:
        """The page walk of one CPU (events in stream order, per-page info, damage)."""
        if cpu not in self._cpu_index:
            data, _ = self.cpu_buffer(cpu)
            self._cpu_index[cpu] = walk_pages(data, self.page_size, commit_size=self.header_page.commit_size,
                                              little=self.little_endian)
        return self._cpu_index[cpu]

    def _walk_all(self) -> None:
        """Walk every CPU not walked yet; when none was, into one set of arrays (no concatenation to merge)."""
        if self._cpu_index or self.cpus == 0:
            for cpu in range(self.cpus):
                self.cpu_index(cpu)
            return
        self._populate()
        indexes, every = walk_buffers([self.cpu_buffer(c)[0] for c in range(self.cpus)], self.page_size,
                                      commit_size=self.header_page.commit_size, little=self.little_endian,
                                      recycle=True)
        starts = np.zeros(self.cpus, np.int64)
        np.cumsum([len(i) for i in indexes[:-1]], out=starts[1:])
        self._cpu_index.update(enumerate(indexes))
        self._walked_together = (every, starts)

    def _populate(self) -> None:
        """Map every uncompressed CPU's pages in one call before walking them all: much cheaper
        than a page fault per few pages (MADV_POPULATE_READ, Linux 5.14; a no-op elsewhere)."""
        if self._buffer.compressed or not _MADV_POPULATE_READ:
            return
        for d in self._buffer.cpus:
            start = d.file_offset // mmap.PAGESIZE * mmap.PAGESIZE
            end = min(d.file_offset + d.file_size, self.file_size)
            if end > start:
                try:
                    self._map.madvise(_MADV_POPULATE_READ, start, end - start)
                except (OSError, ValueError):
                    return

    def cpu_damage(self, cpu: int) -> list[tuple[int, TraceFormatError]]:
        """Damage on one CPU as (events of the CPU before it, error), in stream order."""
        return self._damage_list(cpu, _CpuWalk.of_index(self.cpu_index(cpu)))

    def _damage_list(self, cpu: int, walk: "_CpuWalk") -> list[tuple[int, TraceFormatError]]:
        pages = self._load_cpu(cpu)
        out: list[tuple[int, TraceFormatError]] = []
        for dmg, nxt in walk.damage:
            at = self.file_offset_of(cpu, dmg.page * self.page_size)
            if pages.chunk_starts is None:
                at += dmg.offset
            out.append((nxt, TraceFormatError(dmg.message, path=self.path, offset=at, cpu=cpu, page=dmg.page,
                                              hint="--keep-going skips damaged pages")))
        if walk.trailing_bytes and not pages.load_damage:  # a truncation already explains them
            at = self.file_offset_of(cpu, walk.n_pages * self.page_size)
            out.append((walk.n_events, TraceFormatError(
                f"{walk.trailing_bytes} bytes after the last whole page (page size {self.page_size})",
                path=self.path, offset=at, cpu=cpu, page=walk.n_pages)))
        for _, err in pages.load_damage:
            if err.page is None:
                err.page = walk.n_pages  # the first page not (wholly) there
            out.append((walk.n_events, err))
        out.sort(key=lambda t: t[0])
        return out

    def _walk_window(self, cpu: int, first_page: int, n_pages: int, capacity: int = 0) -> PageIndex:
        """Pages ``first_page`` .. ``first_page + n_pages`` of one CPU walked on their own, with
        offsets into the CPU's whole buffer and page numbers counted from its first page
        (the last window also takes the bytes after the last whole page)."""
        data = self.cpu_buffer(cpu)[0]
        ps = self.page_size
        total = len(data) // ps
        stop = len(data) if first_page + n_pages >= total else (first_page + n_pages) * ps
        idx = walk_buffers([data[first_page * ps : stop]], ps, commit_size=self.header_page.commit_size,
                           little=self.little_endian, capacity=capacity)[0][0]
        if first_page:
            idx.offset += first_page * ps
            idx.damage = [PageDamage(d.page + first_page, d.offset, d.message) for d in idx.damage]
        return idx

    def _drop_pages(self, cpu: int, first_page: int, stop_page: int) -> None:
        """Unmap pages ``first_page`` .. ``stop_page`` of an uncompressed CPU from this process:
        they stay in the page cache and come back on the next read.  Keeps the resident size
        of a windowed merge bounded by its windows rather than by the file."""
        if self._buffer.compressed or stop_page <= first_page or not hasattr(mmap, "MADV_DONTNEED"):
            return
        pages = self._load_cpu(cpu)
        ps = self.page_size
        start = pages.file_offset + first_page * ps
        end = min(pages.file_offset + stop_page * ps, pages.file_offset + len(pages.data))
        lo = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        hi = end // mmap.PAGESIZE * mmap.PAGESIZE
        if hi > lo:
            try:
                self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except (OSError, ValueError):
                pass

    def _walk_summary(self, cpu: int, window_pages: int) -> "_CpuWalk":
        """What :meth:`_cpu_limits` needs of one CPU, walked a window at a time (nothing kept)."""
        n_pages = len(self.cpu_buffer(cpu)[0]) // self.page_size
        damage: list[tuple[PageDamage, int]] = []
        ts_at: dict[int, int] = {}
        missed: list[np.ndarray] = []
        base = 0
        last_ts: int | None = None
        first_page_ts = 0
        trailing = 0
        most = 0
        p = 0
        while True:
            idx = self._walk_window(cpu, p, window_pages)
            n = len(idx)
            most = max(most, n)
            if p == 0 and len(idx.page_ts):
                first_page_ts = int(idx.page_ts[0])
            missed.append(idx.page_missed)
            local_pages = len(idx.page_first)
            for d in idx.damage:
                lp = d.page - p
                nxt = base + (int(idx.page_first[lp + 1]) if lp + 1 < local_pages else n)
                damage.append((d, nxt))
                if nxt > base:
                    ts_at[nxt] = int(idx.ts[nxt - base - 1])
                elif last_ts is not None:
                    ts_at[nxt] = last_ts
            if n:
                last_ts = int(idx.ts[-1])
            trailing = idx.trailing_bytes
            base += n
            self._drop_pages(cpu, p, p + window_pages)
            p += window_pages
            if p >= n_pages:
                break
        if last_ts is not None:
            ts_at[base] = last_ts
        return _CpuWalk(base, n_pages, trailing, damage, ts_at, first_page_ts,
                        np.concatenate(missed) if missed else np.zeros(0, np.int64), most)

    def lost_events(self) -> dict[int, CpuLostEvents]:
        """Per CPU: events the kernel dropped, from the pages' missed-events flags."""
        out = {}
        for cpu in range(self.cpus):
            if cpu not in self._cpu_index and self._walk_summaries is not None:
                m = self._walk_summaries[cpu].page_missed
            else:
                m = self.cpu_index(cpu).page_missed
            out[cpu] = CpuLostEvents(cpu, int(m[m > 0].sum()), int(np.count_nonzero(m)),
                                     int(np.count_nonzero(m < 0)))
        return out

    # -- merged index ----------------------------------------------------------

    def index(self, *, keep_going: bool | None = None) -> MergedIndex:
        """All CPUs' events in trace-cmd report's order.

        Order: repeatedly the CPU whose next event has the smallest timestamp,
        ties to the lower CPU (tracecmd_peek_next_data), each CPU in stream order.
        On damage raises :class:`TraceFormatError` (the first damage) whose
        ``partial`` attribute is the index of the events before the damage;
        with ``keep_going`` damaged pages are skipped and listed in ``damage``.
        """
        kg = self.keep_going if keep_going is None else keep_going
        if kg in self._merged:
            return self._merged[kg]
        per_cpu, damage, cut_ts = self._limits(kg)
        merged = self._merge(per_cpu)
        if cut_ts is not None:
            merged = merged.take(np.flatnonzero(merged.ts <= np.uint64(cut_ts)))
        merged.damage = damage
        if damage and not kg:
            err = damage[0]
            err.partial = merged  # type: ignore[attr-defined]
            err.damage = damage  # type: ignore[attr-defined]
            raise err
        self._merged[kg] = merged
        return merged

    def merged_parts(self, max_events: int, *, keep_going: bool | None = None, window_pages: int = 1024,
                     whole_bytes: int = WHOLE_MERGE_BYTES) -> Generator[MergedIndex, None, list]:
        """:meth:`index` in parts of at most ``max_events``.

        A file with up to ``whole_bytes`` of event pages is merged whole (the
        fastest way) and handed out in slices.  A bigger one is merged a window of
        ``window_pages`` pages per CPU at a time, so that memory is bounded by one
        window per CPU and one part, not by the file: the CPUs are walked once for
        their limits and damage (keeping nothing per event), then again a window at
        a time as the merge needs their events.  Either way the order, the
        lost-event counts and the damage handling are those of :meth:`index`: each
        part carries ``damage``, and without keep-going the first damage is raised
        after the last part.  The generator returns the damage list (also when no part came).
        """
        kg = self.keep_going if keep_going is None else keep_going
        if (self.data_bytes <= whole_bytes or "tsc2nsec" in self.options or self.ts_offset
                or self._guest_time_shift is not None):
            # small enough to merge at once; or shown times are computed and may wrap, which
            # only the whole merge handles
            try:
                merged, error = self.index(keep_going=kg), None
            except TraceFormatError as e:
                merged = getattr(e, "partial", None)
                if merged is None:
                    raise
                error = e
            for start in range(0, len(merged), max_events):
                yield merged.take(slice(start, start + max_events))
            if error is not None:
                raise error
            return merged.damage
        ncpu, ps = self.cpus, self.page_size
        walks = [self._walk_summary(c, window_pages) for c in range(ncpu)]
        self._walk_summaries = walks
        counts, damage, cut = self._cpu_limits(kg, walks)
        error = None
        if damage and not kg:
            error = damage[0]
            error.damage = damage  # type: ignore[attr-defined]
        # one region per CPU in shared arrays, for the window being merged, as big as the
        # CPU's fullest window (the first walk used the same windows): idle CPUs take no room
        sizes = np.array([w.max_window_events for w in walks], np.int64)
        region = np.zeros(ncpu, np.int64)
        np.cumsum(sizes[:-1], out=region[1:])
        room = max(int(sizes.sum()), 1)
        ts = np.empty(room, np.uint64)
        off = np.empty(room, np.int64)
        ln = np.empty(room, np.int32)
        ty = np.empty(room, np.uint16)
        cur, ends, head = region.copy(), region.copy(), np.empty(ncpu, np.int64)
        n_pages = [len(self.cpu_buffer(c)[0]) // ps for c in range(ncpu)]
        next_page = [0] * ncpu
        window_at = [0] * ncpu  # first page of the window in the CPU's region
        mapped_from = [0] * ncpu  # pages before this were dropped (see _drop_pages)
        taken = [0] * ncpu  # the CPU's events put in its region so far
        lost_at = [np.zeros(0, np.int64)] * ncpu
        lost = [np.zeros(0, np.int64)] * ncpu

        def more(c: int) -> bool:
            """CPU ``c`` has events to merge that are not in its region yet."""
            return next_page[c] < n_pages[c] and taken[c] < counts[c]

        def refill(c: int) -> None:
            """The CPU's next window with events into its (used up) region."""
            r = int(region[c])
            cur[c] = ends[c] = r
            lost_at[c] = lost[c] = np.zeros(0, np.int64)
            while more(c):
                window_at[c] = next_page[c]
                idx = self._walk_window(c, next_page[c], window_pages, walks[c].max_window_events)
                next_page[c] += window_pages
                k = min(len(idx), counts[c] - taken[c])
                if k == 0:
                    continue
                ts[r : r + k] = idx.ts[:k]
                off[r : r + k] = idx.offset[:k]
                ln[r : r + k] = idx.length[:k]
                ty[r : r + k] = idx.type_id[:k]
                at, count = idx.missed_at()
                keep = at < k
                lost_at[c], lost[c] = at[keep] + r, count[keep]
                ends[c] = r + k
                taken[c] += k
                return

        for c in range(ncpu):
            refill(c)
        while True:
            part = MergedIndex(np.empty(max_events, np.int32), np.empty(max_events, np.uint64),
                               np.empty(max_events, np.int64), np.empty(max_events, np.int32),
                               np.empty(max_events, np.uint16), np.zeros(max_events, np.int64), damage)
            filled, done = 0, False
            while filled < max_events:
                flags = np.array([more(c) for c in range(ncpu)], np.uint8)
                w, stop = merge_kernel(ts, off, ln, ty, cur, ends, flags, np.concatenate(lost_at),
                                       np.concatenate(lost), max_events - filled, part.cpu[filled:],
                                       part.ts[filled:], part.offset[filled:], part.length[filled:],
                                       part.type_id[filled:], part.missed_before[filled:], head)
                filled += int(w)
                cur[:] = head
                if stop >= 0:
                    refill(int(stop))
                elif filled < max_events:
                    done = True  # every CPU merged to its end
                    break
            part = part.take(slice(0, filled))
            if cut is not None:
                part = part.take(np.flatnonzero(part.ts <= cut))
            if len(part):
                yield part
                # the part has been handled: pages behind each CPU's window are not needed now
                for c in range(ncpu):
                    self._drop_pages(c, mapped_from[c], window_at[c])
                    mapped_from[c] = window_at[c]
            if done:
                break
        if error is not None:
            raise error
        return damage

    def _limits(self, kg: bool) -> tuple[list[tuple[PageIndex, int]], list[TraceFormatError], int | None]:
        """Walk every CPU; per CPU its walk and how many of its events are kept, the damage
        found, and (without keep-going, on damage) the shown time after which no event is kept."""
        self._walk_all()
        indexes = [self.cpu_index(cpu) for cpu in range(self.cpus)]
        counts, damage, cut_ts = self._cpu_limits(kg, [_CpuWalk.of_index(idx) for idx in indexes])
        return list(zip(indexes, counts)), damage, cut_ts

    def _cpu_limits(self, kg: bool, walks: list["_CpuWalk"]) -> tuple[list[int], list[TraceFormatError], int | None]:
        """Per CPU how many of its events are kept, the damage found, and (without keep-going,
        on damage) the shown (adjusted) time after which no event of any CPU is kept."""
        counts = []
        damage: list[TraceFormatError] = []
        cut_ts: int | None = None
        for cpu, walk in enumerate(walks):
            n = walk.n_events
            dmg = self._damage_list(cpu, walk)
            if dmg and not kg:
                n = dmg[0][0]
                # the damage happened after this CPU's last good event: keep later events of other CPUs out
                last = walk.ts_at[n] if n else walk.first_page_ts
                # compared with shown times: adjusted as this CPU's times are
                last = int(self._adjust_ts(np.array([last], dtype=np.uint64), cpu=cpu)[0])
                cut_ts = last if cut_ts is None else min(cut_ts, last)
            damage.extend(e for _, e in dmg)
            counts.append(n)
        damage.sort(key=lambda e: (e.cpu if e.cpu is not None else -1, e.offset or 0))
        return counts, damage, cut_ts

    def type_index(self, *, keep_going: bool | None = None, types: Iterable[int] | None = None) -> "TypeIndex":
        """:meth:`index` grouped by event type, without building the merged arrays.

        One compiled k-way merge finds the merged order as runs of each CPU's
        stream, one counting-sort pass writes every event straight into its
        type's rows (see :class:`TypeIndex`).  ``types``: the type ids wanted
        (default: every id the file has a format for).  Damage is handled as by
        :meth:`index`: without keep-going the error raised carries ``partial``,
        the TypeIndex of the events before the damage.
        """
        kg = self.keep_going if keep_going is None else keep_going
        key = (kg, None if types is None else frozenset(int(t) for t in types))
        got = self._typed.get(key)
        if got is not None:
            return got
        per_cpu, damage, cut_ts = self._limits(kg)
        runs = None
        if cut_ts is None:
            counts = [n for _, n in per_cpu]
            if self._walked_together is not None:
                (ts, off, ln, ty), starts = self._walked_together
            else:
                every = per_cpu or [(PageIndex.empty(self.page_size), 0)]
                ts, off, ln, ty = (np.concatenate([getattr(idx, name) for idx, _ in every])
                                   for name in ("ts", "offset", "length", "type_id"))
                starts = np.zeros(len(per_cpu), np.int64)
                np.cumsum([len(idx) for idx, _ in per_cpu[:-1]], out=starts[1:])
            ends = starts + np.array(counts, np.int64)
            shown = self._adjust_ts(ts, starts=starts)
            if shown is ts or not self._wrapped_by_adjusting(ts, shown, starts, ends):
                total = sum(counts)
                cap = total + len(starts)
                rc, rs, re = (recycler.empty(cap, np.int64) for _ in range(3))
                nr = merge_runs_kernel(shown, starts, ends, rc, rs, re)
                runs = (rc[:nr].copy(), rs[:nr].copy(), re[:nr].copy())
                src = (shown, off, ln, ty)
        if runs is None:
            # damage cut without keep-going, or shown times that wrap: group the merged index
            try:
                merged = self.index(keep_going=kg)
            except TraceFormatError as e:
                merged = e.partial  # type: ignore[attr-defined]
            total = len(merged)
            cpu = merged.cpu
            cuts = np.flatnonzero(cpu[1:] != cpu[:-1]) + 1 if total else np.zeros(0, np.int64)
            rs = np.concatenate([np.zeros(min(total, 1), np.int64), cuts])
            re = np.concatenate([cuts, np.full(min(total, 1), total, np.int64)])
            runs = (cpu[rs].astype(np.int64), rs, re)
            src = (merged.ts, merged.offset, merged.length, merged.type_id)
        out = _group_runs(src, runs, total, self.formats if types is None else set(key[1]))
        out.damage = damage
        if damage and not kg:
            err = damage[0]
            err.partial = out  # type: ignore[attr-defined]
            err.damage = damage  # type: ignore[attr-defined]
            raise err
        self._typed[key] = out
        return out

    def _merge(self, per_cpu: list[tuple[PageIndex, int]]) -> MergedIndex:
        """The first ``n`` events of each CPU's walk, in trace-cmd's order (see :meth:`index`)."""
        counts = [n for _, n in per_cpu]
        busy = [c for c, n in enumerate(counts) if n]
        if len(busy) <= 1:
            # at most one CPU with events: its stream order is the order, no copies
            c = busy[0] if busy else 0
            idx, n = per_cpu[c] if per_cpu else (PageIndex.empty(self.page_size), 0)
            raw = idx.ts[:n]
            shown = self._adjust_ts(raw, cpu=c)
            if shown is raw or not self._wrapped_by_adjusting(raw, shown, np.zeros(1, np.int64),
                                                                 np.full(1, n, np.int64)):
                return MergedIndex(np.full(n, c, np.int32), shown, idx.offset[:n], idx.length[:n],
                                   idx.type_id[:n], idx.missed_before[:n])
        if self._walked_together is not None:
            (ts, off, ln, ty), starts = self._walked_together
        else:
            ts, off, ln, ty = (np.concatenate([getattr(idx, name) for idx, _ in per_cpu])
                               for name in ("ts", "offset", "length", "type_id"))
            starts = np.zeros(len(per_cpu), np.int64)
            np.cumsum([len(idx) for idx, _ in per_cpu[:-1]], out=starts[1:])
        ends = starts + np.array(counts, np.int64)
        # the events that follow lost events, as indexes into ts/off/ln/ty, and the counts
        lost_at, lost = [], []
        for (idx, n), s in zip(per_cpu, starts.tolist()):
            at, count = idx.missed_at()
            lost_at.append(at[at < n] + s)
            lost.append(count[at < n])
        lost_at_a, lost_a = np.concatenate(lost_at), np.concatenate(lost)
        raw = ts
        ts = self._adjust_ts(ts, starts=starts)
        if ts is not raw and self._wrapped_by_adjusting(raw, ts, starts, ends):
            # TSC2NSEC or an offset made a CPU's shown times wrap: a stable sort on them, as before
            sel = np.concatenate([np.arange(s, e) for s, e in zip(starts.tolist(), ends.tolist())])
            o = np.argsort(ts[sel], kind="stable")
            order = sel[o]
            missed = np.zeros(len(ts), np.int64)
            missed[lost_at_a] = lost_a
            cpu = np.repeat(np.arange(len(per_cpu), dtype=np.int32), counts)[o]
            return MergedIndex(cpu, ts[order], off[order], ln[order], ty[order], missed[order])
        total = sum(counts)
        new = recycler.empty
        out = MergedIndex(new(total, np.int32), new(total, np.uint64), new(total, np.int64),
                          new(total, np.int32), new(total, np.uint16), new(total, np.int64))
        out.missed_before[:] = 0
        merge_events(ts, off, ln, ty, starts, ends, lost_at_a, lost_a,
                     out.cpu, out.ts, out.offset, out.length, out.type_id, out.missed_before)
        return out

    def _wrapped_by_adjusting(self, raw: np.ndarray, shown: np.ndarray, starts: np.ndarray,
                              ends: np.ndarray) -> bool:
        """Whether TSC2NSEC or an offset made some CPU's shown times wrap (they are then merged by
        a stable sort).  A guest's time shift can make them step back where its offset drops
        between samples; trace-cmd still merges each CPU in stream order, as the merge kernel does."""
        return self._guest_time_shift is None and _sorted_only_before_adjusting(raw, shown, starts, ends)

    @property
    def _guest_time_shift(self) -> TimeShift | None:
        """The TIME_SHIFT samples that apply to the buffer read: the top one's only (trace-cmd
        clears them in the handle of an instance buffer)."""
        return self.time_shift if self._buffer.name == "" else None

    def _adjust_ts(self, ts: np.ndarray, *, cpu: int | None = None, starts: np.ndarray | None = None) -> np.ndarray:
        """Timestamps as trace-cmd shows them (timestamp_calc): a guest trace's TIME_SHIFT to host
        time, then TSC to ns when TSC2NSEC says so, plus the file offsets.

        The time shift depends on the CPU: ``ts`` is one ``cpu``'s times, or every CPU's end to
        end, CPU ``c``'s from ``starts[c]`` to the next start (the last to the end).
        """
        shift = self._guest_time_shift
        if shift is not None:
            if starts is None:
                if cpu is None:
                    raise ValueError("the time shift of a guest trace needs the CPU of the times")
                ts = shift.apply(ts, cpu)
            else:
                bounds = [int(s) for s in starts] + [len(ts)]
                ts = np.concatenate([shift.apply(ts[a:b], c) for c, (a, b) in enumerate(zip(bounds, bounds[1:]))]
                                    or [ts[:0]])
        if "tsc2nsec" in self.options:
            mult, shift, _ = self.options["tsc2nsec"]
            lo = (ts & np.uint64(0xFFFFFFFF)) * np.uint64(mult)
            hi = (ts >> np.uint64(32)) * np.uint64(mult)
            # mul_u64_u32_shr without 128-bit integers (shift < 64)
            ts = (hi << np.uint64(32 - shift)) + (lo >> np.uint64(shift)) if shift <= 32 else \
                (hi >> np.uint64(shift - 32)) + (lo >> np.uint64(shift))
        off = self.ts_offset
        if off:
            ts = ts + np.uint64(off % (1 << 64))
        return ts

    def records(self, *, keep_going: bool | None = None) -> Iterator[Record]:
        """Every event as a :class:`Record`, in trace-cmd report's order (slow path).

        On damage, yields every record before it and then raises
        :class:`TraceFormatError` (unless ``keep_going``).
        """
        try:
            merged = self.index(keep_going=keep_going)
            error = None
        except TraceFormatError as e:
            merged = getattr(e, "partial", None)
            if merged is None:
                raise
            error = e
        formats = self.formats
        buffers = [self.cpu_buffer(c)[0] for c in range(self.cpus)]
        for cpu, ts, off, ln, ty, missed in zip(merged.cpu.tolist(), merged.ts.tolist(), merged.offset.tolist(),
                                                 merged.length.tolist(), merged.type_id.tolist(),
                                                 merged.missed_before.tolist()):
            yield Record(cpu, ts, buffers[cpu][off : off + ln].tobytes(), formats.get(ty), missed)
        if error is not None:
            raise error

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Release the file mapping (arrays from :meth:`cpu_buffer` must not be used afterwards)."""
        self._cpu_pages.clear()
        self._cpu_index.clear()
        self._merged.clear()
        self._typed.clear()
        self._walked_together = None
        self._data = np.zeros(0, np.uint8)
        try:
            self._map.close()
        except BufferError:
            pass  # numpy views still refer to it; it closes when they go

    def __enter__(self) -> "TraceDatReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TraceDatReader {self.path!r} v{self.version} {self.cpus} CPUs>"


def _sorted_only_before_adjusting(raw: np.ndarray, shown: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bool:
    """Every CPU's raw times go forward but some CPU's shown (adjusted) times do not."""
    def forward(a: np.ndarray) -> bool:
        return all(e - s < 2 or bool(np.all(a[s + 1 : e] >= a[s : e - 1]))
                   for s, e in zip(starts.tolist(), ends.tolist()))
    return forward(raw) and not forward(shown)


