"""trace.dat writer: raw ring-buffer pages plus their metadata, as trace-cmd writes them.

Used by ``tracewatch record`` (live capture to a file) and by the flight
recorder (dumps of pages kept in memory).  Pages are the unit of transport:
they are copied exactly as ``trace_pipe_raw`` returned them, never re-encoded,
so whatever the kernel wrote (missed-events flags, stale bytes after
``commit``) reaches trace-cmd, KernelShark and our own reader unchanged.

Layout written (trace-cmd's ``Documentation/trace-cmd/trace-cmd.dat.v6.5.txt``
and ``.v7.5.txt``; section order and contents follow what trace-cmd 3.x writes
in ``lib/trace-cmd/trace-output.c`` so ``trace-cmd dump`` shows a familiar file)::

    version 6:  initial format | header_page, header_event | ftrace formats |
                event systems | kallsyms | printk formats | saved cmdlines |
                CPU count | "options  \\0" options | "flyrecord\\0" per-CPU
                (offset, size) | trace_clock "[clock]" | page-aligned CPU data
    version 7:  initial format, compression "name\\0version\\0", offset of the
                first options section | sections (16-byte header: id, flags,
                description string id, size), optionally compressed:
                headers, ftrace events, events format, kallsyms, printk,
                command lines | options (offsets of those, clock, uname, ...) |
                buffer flyrecord (page-aligned CPU data, compressed in chunks
                of 10 pages) | options (BUFFER) | strings

trace-cmd finds v7 metadata strings by walking the sections one after another
from the start of the file, so the sections written here tile the file with
no gaps.

:class:`TraceDatWriter` takes pages in any order and any number of calls per
CPU, spools them per CPU (memory first, then an unnamed temporary file in the
output directory), and assembles the file at :meth:`~TraceDatWriter.close`
under a temporary name in the same directory: fsync, then rename.  No partial
file is ever visible under the final name.  That suits the flight recorder,
whose pages are in memory anyway.

:class:`StreamingTraceDatWriter` (``tracewatch record``) writes the metadata
at once and every page to disk as it comes, so that whatever ends a
recording leaves what was captured; its docstring says how and why
(per-CPU spool files, the magic written last, room reserved for finishing).

Files are created with the ``mode`` asked for (``record``: 0o600, as perf
creates perf.data, since a trace holds kernel addresses);
:func:`make_private_directory` does the same for directories.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterable, Union

import numpy as np

from ..errors import TraceFormatError
from .event_format import HeaderPage
from .tracedat import (
    OPT_BUFFER,
    OPT_CMDLINES,
    OPT_CPUCOUNT,
    OPT_CPUSTAT,
    OPT_DATE,
    OPT_DONE,
    OPT_EVENT_FORMATS,
    OPT_FTRACE_EVENTS,
    OPT_HEADER_INFO,
    OPT_HOOK,
    OPT_KALLSYMS,
    OPT_LAST_BOOT_INFO,
    OPT_OFFSET,
    OPT_PRINTK,
    OPT_PROCMAPS,
    OPT_STRINGS,
    OPT_TRACECLOCK,
    OPT_TRACEID,
    OPT_TSC2NSEC,
    OPT_UNAME,
    OPT_VERSION,
    SEC_FL_COMPRESS,
    TRACEDAT_MAGIC,
)

if TYPE_CHECKING:
    from .tracedat import TraceDatReader

__all__ = ["TraceMeta", "TraceDatWriter", "StreamingTraceDatWriter", "write_tracedat", "check_output",
           "make_private_directory", "directory_mode", "PagesLike"]

#: What :meth:`TraceDatWriter.add_pages` accepts: whole pages, back to back.
PagesLike = Union[bytes, bytearray, memoryview, np.ndarray]

#: trace-cmd compresses CPU data in chunks of this many pages (PAGES_IN_CHUNK).
PAGES_PER_CHUNK = 10

#: Pages kept in memory per CPU before the spool moves to a temporary file.
SPOOL_MEMORY_BYTES = 8 << 20

_COMPRESSIONS = ("zstd", "zlib")


def _writer_version() -> str:
    try:
        from importlib.metadata import version

        return f"tracewatch {version('tracewatch')}"
    except Exception:  # not installed as a distribution: still say who wrote the file
        return "tracewatch"


def _read_text(path: Path, *, missing_ok: bool = False) -> str:
    """A tracefs / procfs file as text (their stat size is 0, so read to the end)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        if missing_ok:
            return ""
        raise


@dataclass
class TraceMeta:
    """Everything a trace.dat holds beside the pages.

    Texts are the tracefs / procfs files verbatim: ``header_page`` and
    ``header_event`` (``events/header_page``, ``events/header_event``),
    ``ftrace_formats`` (each ``events/ftrace/*/format``), ``event_formats``
    (system -> each ``events/SYSTEM/*/format``), ``kallsyms``
    (``/proc/kallsyms``, possibly a subset), ``printk_formats``,
    ``cmdlines`` (``saved_cmdlines``).  ``trace_clock`` is a clock name
    (``"local"``) or the ``trace_clock`` file text (``"[local] global ..."``).
    ``page_size`` is the ring-buffer sub-buffer size the pages have;
    ``long_size`` and ``little_endian`` describe the traced machine.
    ``cpustats`` maps CPU -> its ``per_cpu/cpuN/stats`` text.
    ``extra_options`` are further options (id, data) written unchanged, e.g.
    DATE, OFFSET or TSC2NSEC carried over from another file.
    """

    header_page: str
    header_event: str
    ftrace_formats: list[str] = field(default_factory=list)
    event_formats: dict[str, list[str]] = field(default_factory=dict)
    kallsyms: str = ""
    printk_formats: str = ""
    cmdlines: str = ""
    trace_clock: str = "local"
    page_size: int = 4096
    long_size: int = 8
    little_endian: bool = True
    uname: str | None = None
    cpustats: dict[int, str] = field(default_factory=dict)
    extra_options: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def clock(self) -> str:
        """The clock name: ``local`` for both ``"local"`` and ``"[local] global"``."""
        text = self.trace_clock.strip()
        for word in text.split():
            if word.startswith("["):
                return word.strip("[]") or "local"
        return text or "local"

    @property
    def trace_clock_text(self) -> str:
        """The ``trace_clock`` file text for the TRACECLOCK option (``[clock]`` when only a name was given)."""
        return self.trace_clock if "[" in self.trace_clock else f"[{self.clock}]"

    @classmethod
    def from_tracefs(cls, instance_dir: str | os.PathLike[str] = "/sys/kernel/tracing",
                     events: Iterable[tuple[str, str]] | None = None, *,
                     kallsyms_path: str | os.PathLike[str] | None = "/proc/kallsyms") -> "TraceMeta":
        """Read the metadata from a live tracefs: the top directory or ``instances/NAME``.

        ``header_page``, ``header_event``, the ftrace formats, ``printk_formats``
        and ``saved_cmdlines`` come from the top tracefs directory (instances
        share them); the clock, per-CPU stats and sub-buffer size from
        ``instance_dir``.  ``events`` lists ``(system, event)`` pairs whose
        formats to store; None stores every event format (as ``trace-cmd
        record`` without ``-e`` does: about 2 MB).  ``kallsyms_path`` None
        stores no symbols.  Raises OSError naming the file that could not be read.
        """
        inst = Path(instance_dir)
        top = inst.parent.parent if inst.parent.name == "instances" else inst
        events_dir = top / "events"
        header_page = _read_text(events_dir / "header_page")
        header_event = _read_text(events_dir / "header_event")
        ftrace_dir = events_dir / "ftrace"
        ftrace_formats = [_read_text(p) for p in sorted(ftrace_dir.glob("*/format"))]
        event_formats: dict[str, list[str]] = {}
        inst_events = inst / "events"
        if events is None:
            for sys_dir in sorted(p for p in inst_events.iterdir() if p.is_dir() and p.name != "ftrace"):
                texts = [_read_text(p) for p in sorted(sys_dir.glob("*/format"))]
                if texts:
                    event_formats[sys_dir.name] = texts
        else:
            for system, event in events:
                if system == "ftrace":
                    continue  # already stored with the ftrace formats
                event_formats.setdefault(system, []).append(_read_text(inst_events / system / event / "format"))
        page_size = _sub_buffer_size(inst, header_page)
        cpustats: dict[int, str] = {}
        for stats in sorted((inst / "per_cpu").glob("cpu*/stats"), key=lambda p: int(p.parent.name[3:])):
            cpustats[int(stats.parent.name[3:])] = _read_text(stats)
        un = os.uname()
        return cls(
            header_page=header_page,
            header_event=header_event,
            ftrace_formats=ftrace_formats,
            event_formats=event_formats,
            kallsyms=_read_text(Path(kallsyms_path), missing_ok=True) if kallsyms_path else "",
            printk_formats=_read_text(top / "printk_formats", missing_ok=True),
            cmdlines=_read_text(top / "saved_cmdlines", missing_ok=True),
            trace_clock=_read_text(inst / "trace_clock", missing_ok=True).strip() or "local",
            page_size=page_size,
            long_size=struct.calcsize("l"),
            little_endian=sys.byteorder == "little",
            uname=f"{un.sysname} {un.nodename} {un.release} {un.machine}",
            cpustats=cpustats,
        )

    @classmethod
    def from_reader(cls, reader: "TraceDatReader") -> "TraceMeta":
        """The metadata of an open trace.dat, to rewrite it (another version or compression) or split it."""
        header_page, header_event = reader.header_page_text, reader.header_event
        opts = reader.options
        cpustats: dict[int, str] = {}
        for i, text in enumerate(opts.get("cpustat", [])):
            first = text.split("\n", 1)[0]
            cpu = int(first[4:]) if first.startswith("CPU:") and first[4:].strip().isdigit() else i
            cpustats[cpu] = text
        order = "little" if reader.little_endian else "big"
        extra: list[tuple[int, bytes]] = []
        for key, opt in (("date", OPT_DATE), ("offset", OPT_OFFSET), ("hook", OPT_HOOK),
                         ("procmaps", OPT_PROCMAPS), ("last_boot_info", OPT_LAST_BOOT_INFO)):
            if key in opts:
                extra.append((opt, opts[key].encode("utf-8", "surrogateescape") + b"\0"))
        if "traceid" in opts:
            extra.append((OPT_TRACEID, opts["traceid"].to_bytes(8, order)))
        if "tsc2nsec" in opts:
            mult, shift, offset = opts["tsc2nsec"]
            extra.append((OPT_TSC2NSEC, mult.to_bytes(4, order) + shift.to_bytes(4, order)
                          + offset.to_bytes(8, order)))
        extra.extend(opts.get("other", []))
        return cls(
            header_page=header_page,
            header_event=header_event,
            ftrace_formats=list(reader.ftrace_format_texts),
            event_formats={system: list(texts) for system, texts in reader.event_format_texts.items()},
            kallsyms=reader.kallsyms_text,
            printk_formats=reader.printk_text,
            cmdlines=reader.cmdlines_text,
            trace_clock=opts.get("traceclock") or reader.trace_clock,
            page_size=reader.page_size,
            long_size=reader.file_long_size,
            little_endian=reader.little_endian,
            uname=opts.get("uname"),
            cpustats=cpustats,
            extra_options=extra,
        )


def _sub_buffer_size(inst: Path, header_page: str) -> int:
    """The ring buffer's page size: ``buffer_subbuf_size_kb`` where the kernel has it, else header_page's."""
    try:
        return int(_read_text(inst / "buffer_subbuf_size_kb").strip()) * 1024
    except (OSError, ValueError):
        pass
    try:
        return HeaderPage.parse(header_page).page_size
    except Exception:
        return os.sysconf("SC_PAGE_SIZE")


class _Compressor:
    """One block of zlib or zstd, as trace-cmd's compression plugins write them."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "zstd":
            import zstandard

            self.version = ".".join(map(str, zstandard.ZSTD_VERSION))
            self._zstd = zstandard.ZstdCompressor(level=3)
        else:
            self.version = zlib.ZLIB_VERSION

    def compress(self, data: bytes | memoryview) -> bytes:
        if self.name == "zstd":
            return self._zstd.compress(data)
        return zlib.compress(data, 9)  # trace-cmd: compress2(..., Z_BEST_COMPRESSION)


class _Out:
    """The output file with file-endian number packing and back-patching of sizes."""

    def __init__(self, f: BinaryIO, little: bool) -> None:
        self.f = f
        self.end = "<" if little else ">"

    def tell(self) -> int:
        return self.f.tell()

    def raw(self, data: bytes | memoryview) -> None:
        self.f.write(data)

    def u16(self, v: int) -> None:
        self.f.write(struct.pack(self.end + "H", v))

    def u32(self, v: int) -> None:
        self.f.write(struct.pack(self.end + "I", v))

    def u64(self, v: int) -> None:
        self.f.write(struct.pack(self.end + "Q", v))

    def patch_u64(self, at: int, v: int) -> None:
        here = self.f.tell()
        self.f.seek(at)
        self.u64(v)
        self.f.seek(here)

    def pad_to(self, align: int) -> None:
        pad = -self.f.tell() % align
        if pad:
            self.f.write(b"\0" * pad)


def _create_beside(path: str, suffix: str, mode: int | None, flags: int = os.O_WRONLY) -> tuple[str, int]:
    """A new hidden file ``.NAME.RANDOM<suffix>`` in ``path``'s directory: (its path, an fd).

    ``mode`` None: 0o666 minus the umask; else exactly ``mode`` (fchmod, so
    the umask cannot widen or narrow what the caller asked for).
    """
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666 if mode is None else mode & 0o777)
        except FileExistsError:
            continue
        if mode is not None:
            try:
                os.fchmod(fd, mode)
            except BaseException:
                os.close(fd)
                os.unlink(tmp)
                raise
        return tmp, fd
    raise OSError(errno.EEXIST, "cannot create a temporary file", directory)


def check_output(path: str | os.PathLike[str]) -> None:
    """Raise OSError (errno, strerror, the path at fault) if a trace cannot be written to ``path``.

    For a check before tracing starts: ``path`` must be a regular file or
    not exist yet, its directory must exist, and a file must be creatable there (which catches
    a read-only file system and missing permissions, whoever we run as).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OSError(errno.EISDIR, "is a directory", path)
    # the finished file is renamed into place: it would replace a device, a pipe or a link to one
    # (/dev/stdout -> /proc/self/fd/1), not write to it
    if (os.path.exists(path) and not os.path.isfile(path)) or _links_through_proc(path):
        raise OSError(errno.EINVAL, "not a regular file (the trace is renamed into place)", path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.stat(directory)  # EACCES when it cannot even be looked into
    except FileNotFoundError:
        raise OSError(errno.ENOENT, "directory does not exist", directory) from None
    if not os.path.isdir(directory):
        raise OSError(errno.ENOTDIR, "not a directory", directory)
    probe, fd = _create_beside(path, ".probe", 0o600)
    os.close(fd)
    os.unlink(probe)


def _links_through_proc(path: str) -> bool:
    """Whether ``path`` is a symbolic link whose chain passes through /proc (a process's fd, not a file)."""
    hop = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on nested links
        if not os.path.islink(hop):
            return False
        hop = os.path.abspath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
        if hop.startswith("/proc/"):
            return True
    return False


def make_private_directory(path: str | os.PathLike[str], mode: int = 0o700) -> None:
    """Create ``path`` (and missing parents) with ``mode`` (0o700: traces hold kernel addresses).

    An existing directory is left as it is.  For writers of many files (the
    flight recorder's dump directory).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return
    os.makedirs(path, mode=mode, exist_ok=True)
    os.chmod(path, mode)  # makedirs applies the umask


def directory_mode(file_mode: int) -> int:
    """The directory mode that goes with a file mode: search (x) wherever read (r) is allowed (0o600 -> 0o700)."""
    return file_mode | ((file_mode & 0o444) >> 2)


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _sized(text: str, size_bytes: int, end: str) -> bytes:
    """A size word (4 or 8 bytes) then the text."""
    data = _enc(text)
    return struct.pack(end + ("I" if size_bytes == 4 else "Q"), len(data)) + data


class TraceDatWriter:
    """Builds one trace.dat (version 6 or 7) from raw pages and a :class:`TraceMeta`.

    ``cpus`` is the number of CPUs of the traced machine (CPUs without pages
    are written empty).  ``compression`` ("zstd" or "zlib") needs
    ``version=7``.  Call :meth:`add_pages` any number of times, for CPUs in
    any order, then :meth:`close` (or use ``with``; leaving the block with an
    exception writes nothing).  ``mode``: the file's permission bits, exactly
    (e.g. 0o600: a trace holds kernel addresses); None: 0o666 minus the umask.
    """

    def __init__(self, path: str | os.PathLike[str], meta: TraceMeta, cpus: int, *, version: int = 6,
                 compression: str | None = None, mode: int | None = None) -> None:
        self.path = os.fspath(path)
        self.mode = mode
        self.meta = meta
        self.cpus = cpus
        self.version = version
        if version not in (6, 7):
            raise ValueError(f"trace.dat version {version} cannot be written (6 and 7 can)")
        if compression in ("none", ""):
            compression = None
        if compression is not None:
            if compression not in _COMPRESSIONS:
                raise ValueError(f"compression {compression!r} is not supported (zstd, zlib)")
            if version < 7:
                raise ValueError("compression needs trace.dat version 7")
        self.compression = compression
        if not 0 < cpus <= 1 << 13:
            raise ValueError(f"CPU count {cpus} is out of range")
        ps = meta.page_size
        if ps < 64 or ps & (ps - 1):
            raise ValueError(f"page size {ps} is not a power of two of at least 64")
        if meta.long_size not in (4, 8):
            raise ValueError(f"long size {meta.long_size} is neither 4 nor 8")
        self._directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(self._directory):
            raise OSError(errno.ENOENT, "directory does not exist", self._directory)
        self._spools: dict[int, tempfile.SpooledTemporaryFile] = {}
        self._sizes = [0] * cpus
        self._closed = False

    # -- collecting pages --------------------------------------------------

    def add_pages(self, cpu: int, pages: PagesLike) -> None:
        """Append whole pages (as read from ``per_cpu/cpuN/trace_pipe_raw``) to ``cpu``'s data."""
        view = self._page_view(cpu, pages)
        if not view:
            return
        spool = self._spools.get(cpu)
        if spool is None:
            spool = self._spools[cpu] = tempfile.SpooledTemporaryFile(
                max_size=SPOOL_MEMORY_BYTES, dir=self._directory, prefix=".tracewatch-spool-")
        spool.write(view)
        self._sizes[cpu] += len(view)

    def _page_view(self, cpu: int, pages: PagesLike) -> memoryview:
        """``pages`` as bytes, checked: the writer open, the CPU in range, whole pages."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if not 0 <= cpu < self.cpus:
            raise ValueError(f"CPU {cpu} out of range (the writer has {self.cpus} CPUs)")
        if isinstance(pages, np.ndarray):
            pages = np.ascontiguousarray(pages)
        view = memoryview(pages).cast("B")
        if len(view) % self.meta.page_size:
            raise TraceFormatError(
                f"{len(view)} bytes are not a whole number of {self.meta.page_size}-byte pages",
                path=self.path, cpu=cpu)
        return view

    @property
    def data_sizes(self) -> list[int]:
        """Bytes of pages collected so far, per CPU."""
        return list(self._sizes)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` was called."""
        return self._closed

    # -- finishing ---------------------------------------------------------

    def _write_whole(self, f: BinaryIO) -> None:
        """The whole file, headers and pages, into ``f`` (the flight recorder's dumps write it too)."""
        out = _Out(f, self.meta.little_endian)
        if self.version == 6:
            self._write_v6(out)
        else:
            self._write_v7(out)

    def close(self) -> None:
        """Write the file: temporary name in the same directory, fsync, rename over ``path``.

        On any error the temporary file is removed and nothing appears under
        ``path``; OSError and TraceFormatError name the path.
        """
        if self._closed:
            return
        self._closed = True
        tmp_path, fd = self._create_temp()
        try:
            with os.fdopen(fd, "wb") as f:
                self._write_whole(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_path, self.path)
        except BaseException:
            try:
                os.unlink(tmp_path)
            except OSError:
                pass
            raise
        finally:
            self._drop_spools()
        self._fsync_directory()

    def abort(self) -> None:
        """Discard everything collected; no file is written."""
        self._closed = True
        self._drop_spools()

    def __enter__(self) -> "TraceDatWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _drop_spools(self) -> None:
        for spool in self._spools.values():
            spool.close()
        self._spools.clear()

    def _create_temp(self, suffix: str = ".tmp", flags: int = os.O_WRONLY) -> tuple[str, int]:
        """A new file next to ``path`` (same file system, so the rename is atomic), with :attr:`mode`."""
        return _create_beside(self.path, suffix, self.mode, flags)

    def _fsync_directory(self) -> None:
        try:
            dfd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass  # some file systems refuse fsync on directories; the rename is done anyway
        finally:
            os.close(dfd)

    # -- shared pieces -------------------------------------------------------

    def _initial_format(self, out: _Out) -> None:
        out.raw(TRACEDAT_MAGIC)
        out.raw(f"{self.version}\0".encode())
        out.raw(bytes([0 if self.meta.little_endian else 1, self.meta.long_size]))
        out.u32(self.meta.page_size)

    def _header_info(self, end: str) -> bytes:
        return (b"header_page\0" + _sized(self.meta.header_page, 8, end)
                + b"header_event\0" + _sized(self.meta.header_event, 8, end))

    def _ftrace_events(self, end: str) -> bytes:
        parts = [struct.pack(end + "I", len(self.meta.ftrace_formats))]
        parts += [_sized(t, 8, end) for t in self.meta.ftrace_formats]
        return b"".join(parts)

    def _event_formats(self, end: str) -> bytes:
        systems = [(s, texts) for s, texts in self.meta.event_formats.items() if texts]
        parts = [struct.pack(end + "I", len(systems))]
        for system, texts in systems:
            parts.append(_enc(system) + b"\0" + struct.pack(end + "I", len(texts)))
            parts += [_sized(t, 8, end) for t in texts]
        return b"".join(parts)

    def _common_options(self, end: str) -> list[tuple[int, bytes]]:
        """Options both versions carry, in trace-cmd's order: clock, uname, version, extras, cpustats, CPU count."""
        meta = self.meta
        opts = [(OPT_TRACECLOCK, _enc(meta.trace_clock_text) + b"\0")]
        if meta.uname:
            opts.append((OPT_UNAME, _enc(meta.uname) + b"\0"))
        opts.append((OPT_VERSION, _enc(_writer_version()) + b"\0"))
        opts += meta.extra_options
        for cpu in sorted(meta.cpustats):
            text = meta.cpustats[cpu]
            if not text.startswith("CPU:"):
                text = f"CPU: {cpu}\n{text}"  # as trace-cmd record saves them
            opts.append((OPT_CPUSTAT, _enc(text) + b"\0"))
        opts.append((OPT_CPUCOUNT, struct.pack(end + "I", self.cpus)))
        return opts

    def _copy_cpu(self, out: _Out, cpu: int) -> None:
        spool = self._spools.get(cpu)
        if spool is None:
            return
        spool.seek(0)
        shutil.copyfileobj(spool, out.f, 1 << 20)

    def _cpu_chunks(self, cpu: int) -> Iterable[bytes]:
        """That CPU's pages in runs of :data:`PAGES_PER_CHUNK` pages, for chunked compression."""
        spool = self._spools.get(cpu)
        if spool is None:
            return
        spool.seek(0)
        chunk = PAGES_PER_CHUNK * self.meta.page_size
        while True:
            data = spool.read(chunk)
            if not data:
                return
            yield data

    # -- version 6 -----------------------------------------------------------

    def _write_v6(self, out: _Out) -> None:
        self._write_v6_head(out)
        self._write_v6_tail(out)

    def _write_v6_head(self, out: _Out) -> None:
        """Everything up to the printk formats: what does not change while recording."""
        meta, end = self.meta, out.end
        self._initial_format(out)
        out.raw(self._header_info(end))
        out.raw(self._ftrace_events(end))
        out.raw(self._event_formats(end))
        out.raw(_sized(meta.kallsyms, 4, end))
        out.raw(_sized(meta.printk_formats, 4, end))

    def _write_v6_tail(self, out: _Out) -> None:
        """Saved cmdlines, options, the flyrecord table and the CPU data (cmdlines and stats as at the end)."""
        meta, end = self.meta, out.end
        out.raw(_sized(meta.cmdlines, 8, end))
        out.u32(self.cpus)
        out.raw(b"options  \0")
        for opt, data in self._common_options(end):
            out.u16(opt)
            out.u32(len(data))
            out.raw(data)
        out.u16(OPT_DONE)
        out.raw(b"flyrecord\0")
        table = out.tell()
        out.raw(b"\0" * (16 * self.cpus))  # (offset, size) per CPU, filled in below
        # trace-cmd reads this after the table because the TRACECLOCK option is present
        out.raw(_sized(f"[{meta.clock}]", 8, end))
        for cpu in range(self.cpus):
            out.pad_to(meta.page_size)
            start = out.tell()
            self._copy_cpu(out, cpu)
            out.patch_u64(table + 16 * cpu, start)
            out.patch_u64(table + 16 * cpu + 8, out.tell() - start)

    # -- version 7 -----------------------------------------------------------

    def _write_v7(self, out: _Out) -> None:
        self._write_v7_head(out)
        self._write_v7_tail(out)

    def _string_id(self, text: str) -> int:
        """Where ``text`` is in the strings section (written last)."""
        at = len(self._strings)
        self._strings.extend(_enc(text) + b"\0")
        return at

    def _section_header(self, out: _Out, sid: int, flags: int, description: str) -> int:
        """Write a v7 section header; returns where its size goes (patched by :meth:`_section_end`)."""
        out.u16(sid)
        out.u16(flags)
        out.u32(self._string_id(description))
        size_at = out.tell()
        out.u64(0)
        return size_at

    @staticmethod
    def _section_end(out: _Out, size_at: int) -> None:
        out.patch_u64(size_at, out.tell() - size_at - 8)

    def _section(self, out: _Out, sid: int, description: str, payload: bytes) -> int:
        """A whole metadata section, compressed as one block when the file is compressed."""
        comp = self._comp
        at = out.tell()
        size_at = self._section_header(out, sid, SEC_FL_COMPRESS if comp else 0, description)
        if comp:
            packed = comp.compress(payload)
            out.u32(len(packed))
            out.u32(len(payload))
            out.raw(packed)
        else:
            out.raw(payload)
        self._section_end(out, size_at)
        return at

    def _write_v7_head(self, out: _Out) -> None:
        """The initial format and the sections up to printk: what does not change while recording."""
        meta, end = self.meta, out.end
        comp = self._comp = _Compressor(self.compression) if self.compression else None
        self._strings = bytearray()
        self._initial_format(out)
        if comp:
            out.raw(_enc(comp.name) + b"\0" + _enc(comp.version) + b"\0")
        else:
            out.raw(b"none\0\0")
        self._first_options_at = out.tell()
        out.u64(0)
        self._placed = [
            (OPT_HEADER_INFO, self._section(out, OPT_HEADER_INFO, "headers", self._header_info(end))),
            (OPT_FTRACE_EVENTS, self._section(out, OPT_FTRACE_EVENTS, "ftrace events", self._ftrace_events(end))),
            (OPT_EVENT_FORMATS, self._section(out, OPT_EVENT_FORMATS, "events format", self._event_formats(end))),
            (OPT_KALLSYMS, self._section(out, OPT_KALLSYMS, "kallsyms", _sized(meta.kallsyms, 4, end))),
            (OPT_PRINTK, self._section(out, OPT_PRINTK, "printk", _sized(meta.printk_formats, 4, end))),
        ]

    def _write_v7_tail(self, out: _Out) -> None:
        """Command lines, options, the buffer flyrecord, its option and the strings (tiling on from the head)."""
        meta, end, comp = self.meta, out.end, self._comp
        placed = self._placed + [
            (OPT_CMDLINES, self._section(out, OPT_CMDLINES, "command lines", _sized(meta.cmdlines, 8, end)))]

        def options_section(options: list[tuple[int, bytes]]) -> tuple[int, int]:
            """An options section (never compressed); returns its offset and where its DONE option's next-offset is."""
            at = out.tell()
            size_at = self._section_header(out, OPT_DONE, 0, "options")
            for opt, data in options:
                out.u16(opt)
                out.u32(len(data))
                out.raw(data)
            out.u16(OPT_DONE)
            out.u32(8)
            next_at = out.tell()
            out.u64(0)
            self._section_end(out, size_at)
            return at, next_at

        options = [(sid, struct.pack(end + "Q", at)) for sid, at in placed] + self._common_options(end)
        at, next_link = options_section(options)
        out.patch_u64(self._first_options_at, at)

        # The flyrecord buffer: section header, then each CPU's data at a page-aligned offset.
        buffer_at = out.tell()
        size_at = self._section_header(out, OPT_BUFFER, SEC_FL_COMPRESS if comp else 0, "buffer flyrecord ")
        cpu_table: list[tuple[int, int, int]] = []
        for cpu in range(self.cpus):
            out.pad_to(meta.page_size)
            start = out.tell()
            if comp:
                out.u32(0)  # chunk count, patched below
                chunks = 0
                for data in self._cpu_chunks(cpu):
                    packed = comp.compress(data)
                    out.u32(len(packed))
                    out.u32(len(data))
                    out.raw(packed)
                    chunks += 1
                here = out.tell()
                out.f.seek(start)
                out.u32(chunks)
                out.f.seek(here)
            else:
                self._copy_cpu(out, cpu)
            if self._sizes[cpu]:
                # like trace-cmd (tracecmd_compress_copy_from): CPUs without data are left
                # out, and the size counts the chunks but not the 4-byte chunk count before them
                cpu_table.append((cpu, start, out.tell() - start - (4 if comp else 0)))
        self._section_end(out, size_at)

        buffer_option = bytearray(struct.pack(end + "Q", buffer_at))
        buffer_option += b"\0" + _enc(meta.clock) + b"\0"  # top instance: name ""
        buffer_option += struct.pack(end + "II", meta.page_size, len(cpu_table))
        for cpu, start, size in cpu_table:
            buffer_option += struct.pack(end + "IQQ", cpu, start, size)
        at, _ = options_section([(OPT_BUFFER, bytes(buffer_option))])
        out.patch_u64(next_link, at)

        # The strings section comes last and names itself, as trace-cmd's does.
        size_at = self._section_header(out, OPT_STRINGS, SEC_FL_COMPRESS if comp else 0, "strings")
        payload = bytes(self._strings)
        if comp:
            packed = comp.compress(payload)
            out.u32(len(packed))
            out.u32(len(payload))
            out.raw(packed)
        else:
            out.raw(payload)
        self._section_end(out, size_at)



#: Bytes moved from a CPU's spool file into the trace.dat per step at close (then freed in the spool).
MOVE_BYTES = 256 << 10

#: Room kept free for finishing the file, beside the saved cmdlines' size and per-CPU options.
FINISH_RESERVE_BYTES = MOVE_BYTES + (64 << 10)

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


class StreamingTraceDatWriter(TraceDatWriter):
    """A :class:`TraceDatWriter` that keeps every page on disk as it comes, for ``tracewatch record``.

    A recording must survive its end, however it comes: SIGINT, SIGTERM,
    SIGHUP, a second Ctrl-C, a full disk, an error.  How the file is laid out
    while pages arrive, and why:

    * **The metadata goes to the output at once** (at construction, before
      tracing starts): header_page/event, the formats, kallsyms, printk
      formats, i.e. everything that does not change while recording and
      nearly all of the metadata's size.  It is written under a hidden name,
      ``.NAME.RANDOM.partial`` beside ``path``, with the first bytes of the
      magic left zero.  Room is then reserved (``posix_fallocate``) for
      finishing the file: saved cmdlines, options, the per-CPU table and one
      step of the move below.  So a full file system, or an unwritable
      output, shows before the first page is traced, and a disk that fills
      up later still leaves room to finish.
    * **Pages go to one unnamed file per CPU** in the same directory
      (``O_TMPFILE``, or created and unlinked at once), written through to
      the kernel at every :meth:`add_pages`.  A version 6 file needs each
      CPU's data as one contiguous region listed in the flyrecord table, and
      version 7's buffer section is the same per CPU; per-CPU spool files
      are how ``trace-cmd record`` meets that too (its per-CPU temporary
      files, assembled at the end).  A layout readable at every moment
      would need the CPU regions fixed in advance (huge sparse gaps) or
      several buffer sections that trace-cmd would show as separate
      instances; cmdlines and per-CPU stats are also worth taking at the end.
    * **close() finishes the file**: the reserve is given back, the tail
      (cmdlines and stats as they are then, options, table) is written after
      the metadata, each CPU's pages are moved in :data:`MOVE_BYTES` at a
      time, every step freed in the spool file (``FALLOC_FL_PUNCH_HOLE``) so
      that a full disk is not needed twice, the magic is written, then
      fsync and rename to ``path``.  The caller closes on every exit path it
      controls (``tracewatch record`` does, signals included).

    SIGKILL cannot be caught: the spool files vanish with the process (they
    have no name) and the ``.partial`` file, its magic zero, is not a
    trace.dat to trace-cmd or tracewatch; nothing appears under ``path`` (an
    older file there is left as it was).

    A write that fails (``ENOSPC``, ``EDQUOT``, ``EIO``) raises OSError after
    cutting the spool file back to whole pages, so the pages kept stay
    readable; :meth:`close` then still writes them.  ``mode`` defaults to
    0o600, as perf creates perf.data: a trace holds kernel addresses.
    """

    def __init__(self, path: str | os.PathLike[str], meta: TraceMeta, cpus: int, *, version: int = 6,
                 compression: str | None = None, mode: int | None = 0o600) -> None:
        super().__init__(path, meta, cpus, version=version, compression=compression, mode=mode)
        self.partial_path, fd = self._create_temp(".partial", os.O_RDWR)
        self._spool_files: dict[int, BinaryIO] = {}
        #: the newest event time kept (ns, trace clock), known after close
        self.last_event_ts: int | None = None
        try:
            self._file = os.fdopen(fd, "w+b")
        except BaseException:
            os.close(fd)
            os.unlink(self.partial_path)
            raise
        try:
            out = _Out(self._file, meta.little_endian)
            if version == 6:
                self._write_v6_head(out)
            else:
                self._write_v7_head(out)
            self._head_end = out.tell()
            self._file.seek(0)
            self._file.write(b"\0" * len(TRACEDAT_MAGIC))  # the magic comes last: until then, not a trace.dat
            self._file.flush()
            reserve = FINISH_RESERVE_BYTES + 2 * len(_enc(meta.cmdlines)) + 1024 * cpus
            try:
                os.posix_fallocate(self._file.fileno(), self._head_end, reserve)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
        except BaseException:
            self._discard_partial()
            raise

    @property
    def head_bytes(self) -> int:
        """Bytes of metadata written at construction."""
        return self._head_end

    def add_pages(self, cpu: int, pages: PagesLike) -> None:
        """Write whole pages to ``cpu``'s spool file now (OSError: see the class docstring)."""
        view = self._page_view(cpu, pages)
        if not view:
            return
        spool = self._spool_files.get(cpu)
        if spool is None:
            spool = self._spool_files[cpu] = tempfile.TemporaryFile(dir=self._directory, buffering=0)
        fd = spool.fileno()
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            size = os.fstat(fd).st_size
            os.ftruncate(fd, size - size % self.meta.page_size)  # a page the file system took only part of
            raise

    @property
    def data_sizes(self) -> list[int]:
        """Bytes of whole pages kept so far, per CPU."""
        if not self._closed:
            self._sizes = self._spooled_sizes()
        return list(self._sizes)

    def _spooled_sizes(self) -> list[int]:
        """Whole pages in each CPU's spool file (an interrupted write may have left part of one)."""
        ps = self.meta.page_size
        sizes = [0] * self.cpus
        for cpu, spool in self._spool_files.items():
            size = os.fstat(spool.fileno()).st_size
            sizes[cpu] = size - size % ps
        return sizes

    def close(self) -> None:
        """Finish the file (tail, pages, magic), fsync, rename it to ``path``.

        On an error the partial file is removed and OSError names the path.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._sizes = self._spooled_sizes()
            self.last_event_ts = self._last_event_ts()
            f = self._file
            f.flush()
            os.ftruncate(f.fileno(), self._head_end)  # gives the reserve back, for what follows
            f.seek(self._head_end)
            out = _Out(f, self.meta.little_endian)
            if self.version == 6:
                self._write_v6_tail(out)
            else:
                self._write_v7_tail(out)
            f.seek(0)
            f.write(TRACEDAT_MAGIC)
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(self.partial_path, self.path)
        except BaseException:
            self._discard_partial()
            raise
        finally:
            self._drop_spools()
        self._fsync_directory()

    def abort(self) -> None:
        """Discard everything: the partial file and the spool files."""
        self._closed = True
        self._discard_partial()
        self._drop_spools()

    def _discard_partial(self) -> None:
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - closing after a failed write may fail again (ENOSPC on flush)
            pass
        try:
            os.unlink(self.partial_path)
        except OSError:
            pass

    def _drop_spools(self) -> None:
        for spool in self._spool_files.values():
            spool.close()
        self._spool_files.clear()
        super()._drop_spools()

    def _last_event_ts(self) -> int | None:
        """The newest event time kept (ns, trace clock): the last page of each CPU walked."""
        from .ring_page import walk_pages

        try:
            hp = HeaderPage.parse(self.meta.header_page)
        except Exception:  # noqa: BLE001 - a summary only: no header_page, no time
            return None
        ps, newest = self.meta.page_size, None
        for cpu, spool in self._spool_files.items():
            size = self._sizes[cpu]
            if not size:
                continue
            page = os.pread(spool.fileno(), ps, size - ps)
            index = walk_pages(page, ps, commit_size=hp.commit_size, little=self.meta.little_endian)
            if len(index.ts):
                newest = max(newest or 0, int(index.ts[-1]))
        return newest

    def _spool_steps(self, cpu: int, step: int) -> Iterable[bytes]:
        """``cpu``'s pages, ``step`` bytes at a time; each step is freed in the spool once the next is asked for."""
        spool = self._spool_files.get(cpu)
        size = self._sizes[cpu]
        if spool is None or not size:
            return
        fd = spool.fileno()
        for at in range(0, size, step):
            yield os.pread(fd, min(step, size - at), at)
            self._file.flush()  # the step is in the output file before its pages leave the spool
            _punch_hole(fd, at, min(step, size - at))

    def _copy_cpu(self, out: _Out, cpu: int) -> None:
        for data in self._spool_steps(cpu, MOVE_BYTES):
            out.raw(data)

    def _cpu_chunks(self, cpu: int) -> Iterable[bytes]:
        return self._spool_steps(cpu, PAGES_PER_CHUNK * self.meta.page_size)


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """Free a range of a file's blocks (Linux fallocate PUNCH_HOLE); nothing where the file system cannot."""
    import ctypes

    from ..libc import libc

    fallocate = libc().fallocate
    fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)  # an error only costs space

def write_tracedat(path: str | os.PathLike[str], meta: TraceMeta, pages_by_cpu: dict[int, list[PagesLike]], *,
                   cpus: int | None = None, version: int = 6, compression: str | None = None) -> None:
    """Write a whole trace.dat at once: ``pages_by_cpu`` maps CPU -> runs of whole pages.

    ``cpus`` defaults to one more than the highest CPU given (at least 1).
    """
    if cpus is None:
        cpus = max(pages_by_cpu, default=0) + 1
    writer = TraceDatWriter(path, meta, cpus, version=version, compression=compression)
    with writer:
        for cpu in sorted(pages_by_cpu):
            for pages in pages_by_cpu[cpu]:
                writer.add_pages(cpu, pages)
