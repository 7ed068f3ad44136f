"""Live capture: raw ring-buffer pages from every CPU of a tracing instance.

The kernel keeps one ring buffer per CPU; ``per_cpu/cpuN/trace_pipe_raw`` hands
out its pages ("sub-buffers": u64 timestamp, commit word, events) exactly as
trace.dat stores them.  :class:`LiveSource` opens one :class:`CpuReader` per
CPU and yields the pages in batches, ``(cpu, np.ndarray of k whole pages)``,
which :func:`tracewatch.formats.ring_page.walk_pages` decodes.

Two ways to take pages out of the kernel, chosen per CPU at start (read by
default: it measured faster, see :class:`LiveSource`):

* mmap (Linux 6.10+, ``TRACE_MMAP_IOCTL_GET_READER``): the ring buffer is
  mapped read-only; each ioctl hands the reader sub-buffer over and we copy
  the new bytes out of the mapping (:class:`MmapCpuReader`);
* read: ``readv`` of k page-sized buffers, one page per iovec, so one system
  call returns up to k pages (:class:`ReadCpuReader`).

Wake-ups: a single ``epoll`` over all CPU files (the kernel reports a CPU
readable once its buffer is ``buffer_percent`` full), plus a flush every
``flush_interval`` seconds that takes whatever each CPU has, full page or not,
so quiet CPUs still deliver promptly.  One thread does all of it.

Stopping: ``tracing_on`` goes to 0 first, then every CPU is drained without
blocking, partial pages included, so nothing recorded is left behind.  Lost
events are visible twice: in the pages (the commit word's missed-events flags,
which ``walk_pages`` reports) and in the per-CPU stats (:meth:`LiveSource.lost_events`).
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import select
import struct
import sys
import time
from typing import Iterator, NamedTuple

import numpy as np

from ..errors import CaptureError
from ..formats.event_format import HeaderPage
from ..libc import libc
from .tracefs import Instance

__all__ = [
    "LiveSource",
    "CpuReader",
    "ReadCpuReader",
    "MmapCpuReader",
    "PageBatch",
    "mmap_supported",
]

# include/uapi/linux/trace_mmap.h: _IO('R', 0x20)
TRACE_MMAP_IOCTL_GET_READER = (ord("R") << 8) | 0x20

# struct trace_buffer_meta (include/uapi/linux/trace_mmap.h), native byte order:
# meta_page_size, meta_struct_len, subbuf_size, nr_subbufs,
# reader.lost_events, reader.id, reader.read, flags, entries, overrun, read
_META = struct.Struct("=IIIIQIIQQQQ")
_META_READER = struct.Struct("=QII")  # reader.lost_events, reader.id, reader.read at offset 16
_META_READER_OFFSET = 16

_RB_MISSED_EVENTS = 1 << 31
_RB_MISSED_STORED = 1 << 30
_RB_MISSED_FLAGS = _RB_MISSED_EVENTS | _RB_MISSED_STORED
_COMMIT_MASK = (1 << 27) - 1

_SYSTEM_PAGE = mmap.PAGESIZE
_PROT_READ = mmap.PROT_READ
_MAP_SHARED = mmap.MAP_SHARED
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = libc()
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


class PageBatch(NamedTuple):
    """Whole ring-buffer pages of one CPU, oldest first.

    ``pages`` is a 1-D uint8 array of ``n_pages * page_size`` bytes, ready for
    ``walk_pages(pages, page_size)``; it is the caller's to keep.
    """

    cpu: int
    pages: np.ndarray

    def n_pages(self, page_size: int) -> int:
        return len(self.pages) // page_size


class CpuReader:
    """Takes raw pages out of one CPU's ring buffer (``per_cpu/cpuN/trace_pipe_raw``).

    The file is opened non-blocking: waiting is the job of the epoll loop in
    :class:`LiveSource`.  ``read_batch`` returns up to ``max_pages`` pages, or
    None when the CPU has nothing right now.
    """

    mode = "?"

    def __init__(self, instance: Instance, cpu: int, page_size: int, commit_size: int = 8) -> None:
        self.cpu = cpu
        self.page_size = page_size
        self.commit_size = commit_size
        self.path = instance.file(f"per_cpu/cpu{cpu}/trace_pipe_raw")
        self.pages_read = 0
        self.bytes_read = 0  # event data bytes (commit), not page bytes
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise CaptureError(f"cannot open {self.path}: {e.strerror}") from None

    def fileno(self) -> int:
        return self.fd

    def read_batch(self, max_pages: int) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _count(self, buf: np.ndarray, n_pages: int) -> None:
        self.pages_read += n_pages
        if n_pages:
            dtype = np.uint64 if self.commit_size == 8 else np.uint32
            words = buf[: n_pages * self.page_size].reshape(n_pages, self.page_size)[:, 8:8 + self.commit_size]
            self.bytes_read += int((words.copy().view(dtype) & _COMMIT_MASK).sum())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} cpu{self.cpu} fd={self.fd}>"


class ReadCpuReader(CpuReader):
    """Reads pages with ``readv``: each iovec is one page, so one call returns many.

    trace_pipe_raw's read returns at most one page per call; ``readv`` loops
    over the iovecs in the kernel and stops at the first short read (EAGAIN
    once the buffer is empty), which makes k pages cost one system call.
    """

    mode = "read"

    def read_batch(self, max_pages: int) -> np.ndarray | None:
        ps = self.page_size
        out = np.empty(max_pages * ps, dtype=np.uint8)
        view = memoryview(out)
        iov = [view[i * ps:(i + 1) * ps] for i in range(max_pages)]
        try:
            n_pages = self.read_into(iov)
        finally:
            del iov
            view.release()
        if n_pages == 0:
            return None
        # don't let a mostly-empty batch pin the whole allocation
        pages = out[: n_pages * ps] if n_pages * 4 >= max_pages else out[: n_pages * ps].copy()
        self._count(pages, n_pages)
        return pages

    def read_into(self, iov: list[memoryview]) -> int:
        """``readv`` into ``iov`` (page-sized writable buffers); returns the whole pages read (0: none now).

        Not counted in ``pages_read``/``bytes_read``: the caller calls ``_count`` on the pages."""
        try:
            n = os.readv(self.fd, iov)
        except BlockingIOError:
            return 0
        except OSError as e:
            raise CaptureError(f"reading {self.path}: {e.strerror}") from None
        return n // self.page_size


class _Arena:
    """One CPU's pages land here, batch after batch, so a run of batches is one array.

    Never written twice while anyone refers to it: a batch handed out is a
    view of ``arr``, and every view, memoryview or array made from it keeps
    ``arr`` alive, so ``arr``'s reference count says whether it is free again.
    """

    __slots__ = ("arr", "iov", "pos", "first", "n_pages", "_free_refs")

    def __init__(self, n_pages: int, page_size: int) -> None:
        self.arr = np.empty(n_pages * page_size, np.uint8)
        mv = memoryview(self.arr)
        self.iov = [mv[i * page_size:(i + 1) * page_size] for i in range(n_pages)]
        self.n_pages = n_pages
        self.pos = 0
        self.first = 0  # the first page handed out: the pages before it are free room
        self._free_refs = sys.getrefcount(self.arr)

    def in_use(self) -> bool:
        return sys.getrefcount(self.arr) > self._free_refs


class MmapCpuReader(CpuReader):
    """Reads pages through the memory-mapped ring buffer (Linux 6.10+).

    Layout of the mapping: a meta page (``struct trace_buffer_meta``), then
    ``nr_subbufs`` sub-buffers in id order.  ``TRACE_MMAP_IOCTL_GET_READER``
    makes ``meta.reader.id`` the sub-buffer we may read and ``meta.reader.read``
    the bytes of it the kernel now counts as consumed: the new data is from
    where we stopped on that sub-buffer (0 after a swap) to ``reader.read``.

    The reader sub-buffer goes back into the ring at the next swap, so pages
    are copied out, never handed out as views.  When the writer is still on
    the reader sub-buffer we get it in pieces; a later piece becomes a page
    of its own whose header time is the running time after the earlier
    events (what the kernel's read path does for a partial page).
    """

    mode = "mmap"

    def __init__(self, instance: Instance, cpu: int, page_size: int, commit_size: int = 8) -> None:
        super().__init__(instance, cpu, page_size, commit_size)
        self._mappings: list[tuple[int, int]] = []  # (address, length) to munmap
        self._meta: ctypes.Array | None = None
        self._data_mv: memoryview | None = None
        try:
            self._map()
        except BaseException:
            self.close()
            raise

    def _map(self) -> None:
        meta = self._mmap(_SYSTEM_PAGE, 0, "the meta page")
        (meta_page_size, _struct_len, subbuf_size, nr_subbufs, _lost, rid, rread,
         *_rest) = _META.unpack_from(meta, 0)
        if meta_page_size > _SYSTEM_PAGE:
            self._unmap_all()
            meta = self._mmap(meta_page_size, 0, "the meta page")
        self._meta = meta
        if subbuf_size != self.page_size:
            raise CaptureError(f"{self.path}: mapped sub-buffers are {subbuf_size} bytes, "
                               f"header_page says {self.page_size}")
        self.meta_page_size = meta_page_size
        self.nr_subbufs = nr_subbufs
        self._data_mv = memoryview(self._mmap(subbuf_size * nr_subbufs, meta_page_size,
                                              "the sub-buffers")).cast("B")
        # Bytes of data a reader before us already took from the reader sub-buffer.
        self._id = rid
        self._consumed = rread
        self._get_reader()  # probe: fails with ENOTTY where the ioctl does not exist

    def _mmap(self, length: int, offset: int, what: str) -> ctypes.Array:
        """mmap(2) through libc: Python's mmap module refuses files whose st_size is 0,
        which every tracefs file reports."""
        addr = _libc.mmap(None, ctypes.c_size_t(length), _PROT_READ, _MAP_SHARED, self.fd,
                          ctypes.c_long(offset))
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            raise CaptureError(f"cannot mmap {what} of {self.path}: {os.strerror(err)}")
        self._mappings.append((addr, length))
        return (ctypes.c_uint8 * length).from_address(addr)

    def _unmap_all(self) -> None:
        self._meta = None
        if self._data_mv is not None:
            self._data_mv.release()
            self._data_mv = None
        for addr, length in self._mappings:
            _libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(length))
        self._mappings.clear()

    def _get_reader(self) -> tuple[int, int]:
        try:
            fcntl.ioctl(self.fd, TRACE_MMAP_IOCTL_GET_READER)
        except OSError as e:
            raise CaptureError(f"{self.path}: TRACE_MMAP_IOCTL_GET_READER failed: {e.strerror}") from None
        _lost, rid, rread = _META_READER.unpack_from(self._meta, _META_READER_OFFSET)
        return rid, rread

    def meta(self) -> dict[str, int]:
        """The meta page's counters (entries, overrun, read...), as the kernel last updated them."""
        keys = ("meta_page_size", "meta_struct_len", "subbuf_size", "nr_subbufs", "reader_lost_events",
                "reader_id", "reader_read", "flags", "entries", "overrun", "read")
        return dict(zip(keys, _META.unpack_from(self._meta, 0)))

    def read_batch(self, max_pages: int) -> np.ndarray | None:
        # memoryview slices and struct: per page this is one ioctl and one
        # memcpy; numpy's per-call overhead would triple the cost at 4 KiB.
        ps = self.page_size
        hdr = 8 + self.commit_size
        commit_fmt = "=Q" if self.commit_size == 8 else "=I"
        data = self._data_mv
        out = bytearray(max_pages * ps)
        n = 0
        while n < max_pages:
            rid, rread = self._get_reader()
            caught_up = rid == self._id
            if caught_up:
                # More data on the sub-buffer we already read from: the writer is
                # on it, so this piece is the last for now.  Asking again would
                # only return events our own ioctl calls produce when syscalls
                # are traced: a loop that never ends.
                start = self._consumed
                if rread <= start:
                    break
            else:
                start = 0
            self._id, self._consumed = rid, rread
            if rread <= start:
                continue  # a fresh sub-buffer with nothing on it yet
            src = rid * ps
            dst = n * ps
            if start == 0:
                flags = struct.unpack_from(commit_fmt, data, src + 8)[0] & _RB_MISSED_FLAGS
                end = hdr + rread
                if flags & _RB_MISSED_STORED:
                    end += self.commit_size  # the lost-event count follows the data
                out[dst:dst + end] = data[src:src + end]
                struct.pack_into(commit_fmt, out, dst + 8, rread | flags)
            else:
                ts = _running_time(data[src:src + hdr + start], hdr, start)
                struct.pack_into("=Q", out, dst, ts)
                out[dst + hdr:dst + hdr + rread - start] = data[src + hdr + start:src + hdr + rread]
                struct.pack_into(commit_fmt, out, dst + 8, rread - start)
            n += 1
            if caught_up:
                break
        if n == 0:
            return None
        pages = np.frombuffer(out, dtype=np.uint8)[: n * ps]
        if n * 4 < max_pages:
            pages = pages.copy()  # don't let a mostly-empty batch pin the whole allocation
        self._count(pages, n)
        return pages

    def close(self) -> None:
        # Only copies ever leave this reader, so nothing points into the mapping now.
        self._unmap_all()
        super().close()


def _running_time(page: memoryview | bytes, hdr: int, upto: int) -> int:
    """The running timestamp after the events in the first ``upto`` data bytes.

    Follows the same rules as ``walk_pages`` (libtraceevent's kbuffer): every
    header's time_delta adds, time extends add ``delta + (array[0] << 27)``,
    absolute stamps replace the low 59 bits.  Pure Python: it runs only for
    the second and later piece of a sub-buffer, which happens when the
    reader keeps up with a slow writer, so speed does not matter there.
    """
    little = sys.byteorder == "little"
    raw = bytes(page)
    ts = struct.unpack_from("=Q", raw, 0)[0]
    pos = hdr
    end = hdr + upto
    while pos + 4 <= end:
        word = struct.unpack_from("=I", raw, pos)[0]
        type_len, delta = (word & 31, word >> 5) if little else (word >> 27, word & _COMMIT_MASK)
        if type_len == 29:  # padding
            if delta == 0 or pos + 8 > end:
                break
            ts += delta
            pos += 4 + struct.unpack_from("=I", raw, pos + 4)[0]
        elif type_len in (30, 31):  # time extend / absolute time stamp
            ext = (struct.unpack_from("=I", raw, pos + 4)[0] << 27) + delta
            ts = ts + ext if type_len == 30 else ext | (ts & (0xF8 << 56))
            pos += 8
        elif type_len == 0:
            ts += delta
            pos += 4 + ((struct.unpack_from("=I", raw, pos + 4)[0] + 3) & ~3)
        else:
            ts += delta
            pos += 4 + type_len * 4
    return ts & 0xFFFFFFFFFFFFFFFF


def mmap_supported(instance: Instance, cpu: int | None = None) -> bool:
    """Whether this kernel lets trace_pipe_raw be memory-mapped (probed, not guessed)."""
    cpu = instance.cpus[0] if cpu is None else cpu
    hp = instance.header_page()
    try:
        reader = MmapCpuReader(instance, cpu, hp.page_size, hp.commit_size)
    except CaptureError:
        return False
    reader.close()
    return True


class LiveSource:
    """Raw pages from every CPU of an :class:`Instance`, as they are written.

    ::

        with Instance() as inst:
            inst.enable(["sched:sched_switch"])
            with LiveSource(inst) as src:
                for cpu, pages in src.batches(duration=5):
                    index = walk_pages(pages, src.page_size)

    ``batches`` turns tracing on, yields ``PageBatch(cpu, pages)`` until
    ``duration`` passes or :meth:`stop` is called (from a handler, another
    thread or a signal handler), then turns tracing off and yields what is
    left, partial pages included.

    ``mmap``: False (default) reads with ``readv``; True requires the
    memory-mapped path; None uses mmap where the kernel offers it.  Read is the
    default because it measured faster (bench/live_read.py): the mmap ioctl
    advances the kernel's reader event by event (about 5 us per 4 KiB page on
    its own), while read swaps a whole page and readv returns many per call
    (2-4 us per page in all).  ``batch_pages`` bounds
    one batch; ``flush_interval`` is how often (seconds) CPUs below
    ``buffer_percent`` are read anyway, ``active_interval`` how often CPUs
    that delivered pages at their last read are; ``buffer_percent`` (if given) is
    written to the instance.

    The read path reads straight into per-CPU arenas of ``arena_bytes``:
    a CPU's batches follow one another in memory, so the merger walks them
    in place, and nothing is allocated or copied per batch.  A batch is a
    view of its arena and stays valid as long as anyone holds it (an arena
    is reused only once nothing refers to it; taps may keep pages).
    """

    def __init__(self, instance: Instance, *, cpus: list[int] | None = None, mmap: bool | None = False,
                 batch_pages: int = 256, flush_interval: float = 0.25, buffer_percent: int | None = None,
                 arena_bytes: int = 64 << 20, active_interval: float = 0.02) -> None:
        self.instance = instance
        self.cpus = list(instance.cpus if cpus is None else cpus)
        self.header_page: HeaderPage = instance.header_page()
        self.page_size = self.header_page.page_size
        self.commit_size = self.header_page.commit_size
        self.want_mmap = mmap
        self.batch_pages = max(1, int(batch_pages))
        self.flush_interval = flush_interval
        self.active_interval = active_interval
        self._pages_seen: dict[int, int] = {}
        self.buffer_percent = buffer_percent
        self.arena_pages = max(4 * self.batch_pages, int(arena_bytes) // self.page_size)
        self._arenas: dict[int, _Arena] = {}  # per CPU: the arena being filled
        self._spare: dict[int, list[_Arena]] = {}  # per CPU: arenas filled earlier, reused once free
        self.arenas_made = 0
        self.readers: list[CpuReader] = []
        self._epoll: select.epoll | None = None
        self._wake_fd = -1
        self._stop_requested = False
        self._started = False
        self._closed = False
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def __repr__(self) -> str:
        return f"<LiveSource {self.instance.name} cpus={self.cpus} mode={self.mode}>"

    def __enter__(self) -> "LiveSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def mode(self) -> str:
        """'mmap', 'read', 'mixed', or 'not started'."""
        modes = {r.mode for r in self.readers}
        if not modes:
            return "not started"
        return modes.pop() if len(modes) == 1 else "mixed"

    # -- lifecycle
    def start(self, *, tracing_on: bool = True) -> None:
        """Open the per-CPU readers, then turn tracing on (unless told not to)."""
        if self._started:
            return
        if self._closed:
            raise CaptureError("this LiveSource is closed")
        self._started = True
        self.instance.attach_closer(self.close)
        try:
            if self.buffer_percent is not None:
                self.instance.buffer_percent = self.buffer_percent
            self._epoll = select.epoll()
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._epoll.register(self._wake_fd, select.EPOLLIN)
            for cpu in self.cpus:
                reader = self._open_reader(cpu)
                self.readers.append(reader)
                self._epoll.register(reader.fd, select.EPOLLIN)
            self._by_fd = {r.fd: r for r in self.readers}
            if tracing_on:
                self.instance.tracing_on = True
            self.started_at = time.monotonic()
        except BaseException:
            self.close()
            raise

    def _open_reader(self, cpu: int) -> CpuReader:
        if self.want_mmap is not False:
            try:
                return MmapCpuReader(self.instance, cpu, self.page_size, self.commit_size)
            except CaptureError:
                if self.want_mmap:
                    raise
        return ReadCpuReader(self.instance, cpu, self.page_size, self.commit_size)

    def stop(self) -> None:
        """Ask ``batches`` to finish: it stops tracing, drains and ends.

        Safe from a signal handler or another thread.
        """
        self._stop_requested = True
        if self._wake_fd >= 0:
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:
                pass

    def close(self) -> None:
        """Close every reader (no drain).  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._arenas.clear()  # batches handed out keep their arena alive
        self._spare.clear()
        for reader in self.readers:
            try:
                reader.close()
            except OSError:
                pass
        if self._epoll is not None:
            self._epoll.close()
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1
        self.instance.detach_closer(self.close)

    # -- reading
    def batches(self, duration: float | None = None) -> Iterator[PageBatch]:
        """Yield page batches until ``duration`` seconds pass or :meth:`stop`; then drain."""
        self.start()
        assert self._epoll is not None
        now = time.monotonic()
        deadline = None if duration is None else now + duration
        next_flush = now + self.flush_interval
        # CPUs whose last read filled whole batches: more is waiting, so the next
        # turn reads them again without sleeping in epoll (the kernel only wakes
        # us again when the buffer crosses buffer_percent, far too late at high rates)
        busy: list[CpuReader] = []
        # CPUs that delivered pages in the last turn: read again after active_interval
        # even without a wake-up, so a steady writer is read in small steps instead of
        # in bursts of half the buffer (little headroom left, large releases)
        active: list[CpuReader] = []
        next_active = now + self.active_interval
        while not self._stop_requested:
            wake_at = next_flush if deadline is None else min(next_flush, deadline)
            if active:
                wake_at = min(wake_at, next_active)
            timeout = 0.0 if busy else max(0.0, wake_at - time.monotonic())
            events = self._epoll.poll(timeout)
            wanted = {r.cpu for r in busy}
            for fd, _mask in events:
                if fd != self._wake_fd:
                    wanted.add(self._by_fd[fd].cpu)
            now = time.monotonic()
            if now >= next_flush:
                wanted = {r.cpu for r in self.readers}
                next_flush = now + self.flush_interval
            if now >= next_active:
                wanted.update(r.cpu for r in active)
                next_active = now + self.active_interval
            busy = []
            read_now = []
            for reader in self.readers:
                if reader.cpu not in wanted:
                    continue
                read_now.append(reader)
                # a few batches per CPU per turn, so one busy CPU cannot starve the others
                for _ in range(4):
                    batch = self._read(reader)
                    if batch is None:
                        break
                    yield PageBatch(reader.cpu, batch)
                    if len(batch) < self.batch_pages * self.page_size:
                        break
                else:
                    busy.append(reader)
            if read_now:
                got = {r.cpu for r in read_now if r.pages_read != self._pages_seen.get(r.cpu, 0)}
                for r in read_now:
                    self._pages_seen[r.cpu] = r.pages_read
                active = [r for r in self.readers if r.cpu in got or (r in active and r not in read_now)]
            if deadline is not None and time.monotonic() >= deadline:
                break
        yield from self.drain()

    def _read(self, reader: CpuReader) -> np.ndarray | None:
        """Up to ``batch_pages`` pages of ``reader``'s CPU (read path: into its arena), or None."""
        if not isinstance(reader, ReadCpuReader):
            return reader.read_batch(self.batch_pages)
        k = self.batch_pages
        arena = self._arenas.get(reader.cpu)
        if arena is None or arena.pos + k > arena.n_pages:
            arena = self._next_arena(reader.cpu, arena)
        at = arena.pos
        n = reader.read_into(arena.iov[at:at + k])
        if n == 0:
            return None
        arena.pos = at + n
        ps = self.page_size
        pages = arena.arr[at * ps:(at + n) * ps]
        reader._count(pages, n)
        return pages

    def _next_arena(self, cpu: int, full: _Arena | None) -> _Arena:
        spare = self._spare.setdefault(cpu, [])
        if full is not None:
            spare.append(full)
        arena = None
        for i, a in enumerate(spare):
            if a is not full and not a.in_use():
                arena = spare.pop(i)
                break
        if arena is None:
            arena = _Arena(self.arena_pages, self.page_size)
            self.arenas_made += 1
        del spare[:-2]  # keep a few for reuse; the others go when their last user lets go
        # room at the start for the merger to put pages still pending from the previous arena
        # right before the new ones (see prepend_room), so a CPU's pages stay one run
        arena.pos = arena.first = arena.n_pages // 2
        self._arenas[cpu] = arena
        return arena

    def prepend_room(self, cpu: int, pages: np.ndarray, nbytes: int) -> np.ndarray | None:
        """Writable free bytes right before ``pages``, when ``pages`` are the first handed out from
        ``cpu``'s current arena and the room there holds ``nbytes`` whole pages; else None.

        The merger copies pages still pending from the previous arena there, so
        that they and the new pages are one run (no copy of the new pages).
        The room is given once.
        """
        arena = self._arenas.get(cpu)
        ps = self.page_size
        if arena is None or pages.base is not arena.arr or nbytes % ps:
            return None
        start = pages.__array_interface__["data"][0] - arena.arr.__array_interface__["data"][0]
        k = nbytes // ps
        if start != arena.first * ps or k > arena.first:
            return None
        arena.first -= k
        return arena.arr[start - nbytes:start]

    def drain(self) -> Iterator[PageBatch]:
        """Stop tracing, then yield everything still in the buffers (partial pages too)."""
        if not self._started or self._closed:
            return
        self.instance.tracing_on = False
        self.stopped_at = time.monotonic()
        for reader in self.readers:
            while True:
                batch = self._read(reader)
                if batch is None:
                    break
                yield PageBatch(reader.cpu, batch)

    def pages(self, duration: float | None = None) -> Iterator[tuple[int, memoryview]]:
        """Yield ``(cpu, page)`` one page at a time (a view into its batch)."""
        ps = self.page_size
        for cpu, buf in self.batches(duration):
            view = memoryview(buf)
            for off in range(0, len(buf), ps):
                yield cpu, view[off:off + ps]

    # -- accounting
    def stats(self) -> dict[int, dict[str, float]]:
        """Per CPU: the kernel's ``per_cpu/cpuN/stats`` plus what we read (pages_read, bytes_read)."""
        out: dict[int, dict[str, float]] = {}
        for cpu in self.cpus:
            s: dict[str, float] = dict(self.instance.per_cpu_stats(cpu))
            reader = next((r for r in self.readers if r.cpu == cpu), None)
            if reader is not None:
                s["pages_read"] = reader.pages_read
                s["bytes_read"] = reader.bytes_read
            out[cpu] = s
        return out

    def lost_events(self) -> int:
        """Events the kernel recorded but could not keep (overrun, commit overrun, dropped)."""
        return self.instance.lost_events()

    @property
    def pages_read(self) -> int:
        return sum(r.pages_read for r in self.readers)
