"""Build ftrace ring-buffer pages byte by byte, for tests.

Like drgn's ``elfwriter``: tests describe what a page should contain and get
the exact bytes the kernel would have written, with every header kind the
decoder must handle::

    b = PageBuilder(page_size=4096)
    b.begin_page(1_000_000, missed=-1)       # RB_MISSED_EVENTS without a stored count
    b.event(payload, delta=5)                # type_len 1..28, or 0 with a length word
    b.time_extend(1 << 30)                   # RINGBUF_TYPE_TIME_EXTEND
    b.absolute(2_000_000_000)                # RINGBUF_TYPE_TIME_STAMP
    b.padding(24, delta=1)                   # a discarded event
    b.event(payload2)
    data = b.build()                         # bytes, whole pages
    b.expected                               # [(ts, payload, page)], what a walk must find

``add(ts, payload)`` is the convenient form: it works out the delta from the
running time, puts a time extend in when the delta needs more than 27 bits,
and starts a new page when the event does not fit.  Timestamps follow
libtraceevent's kbuffer, the reference decoder: every header's ``time_delta``
(padding included) is added to the running time; an absolute stamp takes its
top 5 bits from the running time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PageBuilder", "ExpectedEvent", "make_payload"]

_TYPE_PADDING = 29
_TYPE_TIME_EXTEND = 30
_TYPE_TIME_STAMP = 31
_DELTA_MAX = (1 << 27) - 1
_TS_MSB = 0xF8 << 56
_MISSED_EVENTS = 1 << 31
_MISSED_STORED = 1 << 30


@dataclass(frozen=True)
class ExpectedEvent:
    """An event a walk must report: its timestamp, record bytes (padded to 4) and page number."""

    ts: int
    payload: bytes
    page: int


def make_payload(type_id: int, size: int, fill: int = 0, little: bool = True) -> bytes:
    """A record of ``size`` bytes whose first two bytes are ``common_type`` = ``type_id``."""
    if size < 2:
        return bytes(size)
    head = type_id.to_bytes(2, "little" if little else "big")
    return head + bytes((fill + i) & 0xFF for i in range(size - 2))


@dataclass
class _Page:
    timestamp: int
    missed: int  # 0 none, -1 flagged without a count, N > 0 stored count
    body: bytearray = field(default_factory=bytearray)


class PageBuilder:
    """Writes ring-buffer pages of ``page_size`` bytes (the sub-buffer size).

    ``commit_size`` is the header_page commit field size (8 on 64-bit kernels,
    4 on 32-bit); ``little`` the kernel's byte order.  Bytes after a page's
    commit are filled with ``junk`` so that a decoder reading past the commit
    is caught.
    """

    def __init__(self, page_size: int = 4096, *, commit_size: int = 8, little: bool = True,
                 junk: int = 0xA5) -> None:
        if commit_size not in (4, 8):
            raise ValueError("commit_size must be 4 or 8")
        self.page_size = page_size
        self.commit_size = commit_size
        self.little = little
        self.junk = junk
        self.data_start = 8 + commit_size
        self.pages: list[_Page] = []
        self.expected: list[ExpectedEvent] = []
        self._ts = 0  # running time as kbuffer computes it

    # -- low level: one header at a time ---------------------------------------

    @property
    def room(self) -> int:
        """Bytes still free on the current page (0 without a page)."""
        if not self.pages:
            return 0
        return self.page_size - self.data_start - len(self.pages[-1].body)

    @property
    def now(self) -> int:
        """The running time after the last header written."""
        return self._ts

    def begin_page(self, timestamp: int, *, missed: int = 0) -> None:
        """Start a page whose header timestamp is ``timestamp``.

        ``missed``: 0 no events lost before it; -1 RB_MISSED_EVENTS without a
        count; N > 0 RB_MISSED_EVENTS | RB_MISSED_STORED with N stored after the data.
        """
        self.pages.append(_Page(timestamp, missed))
        self._ts = timestamp

    def _u32(self, value: int) -> bytes:
        return (value & 0xFFFFFFFF).to_bytes(4, "little" if self.little else "big")

    def _header(self, type_len: int, delta: int) -> bytes:
        if not 0 <= delta <= _DELTA_MAX:
            raise ValueError(f"time_delta {delta} does not fit 27 bits; add a time extend")
        if self.little:
            return self._u32((delta << 5) | type_len)
        return self._u32((type_len << 27) | delta)

    def _put(self, raw: bytes) -> None:
        if not self.pages:
            raise ValueError("begin_page() first")
        if len(raw) > self.room:
            raise ValueError(f"{len(raw)} bytes do not fit the {self.room} left on the page")
        self.pages[-1].body += raw

    def event(self, payload: bytes, delta: int = 0, *, long_form: bool = False) -> None:
        """A data event: type_len = len/4 up to 28 (112 bytes), else type_len 0 with a length word.

        ``payload`` is padded with zeros to a multiple of 4, as the kernel
        stores it; ``long_form`` forces the length-word form for a small record.
        """
        padded = bytes(payload) + bytes(-len(payload) % 4)
        if not padded:
            raise ValueError("a ring-buffer event carries at least 4 bytes")
        if len(padded) <= 28 * 4 and not long_form:
            raw = self._header(len(padded) // 4, delta) + padded
        else:
            raw = self._header(0, delta) + self._u32(len(padded) + 4) + padded
        self._put(raw)
        self._ts += delta
        self.expected.append(ExpectedEvent(self._ts & 0xFFFFFFFFFFFFFFFF, padded, len(self.pages) - 1))

    def time_extend(self, delta: int) -> None:
        """RINGBUF_TYPE_TIME_EXTEND: add ``delta`` (up to 59 bits) to the running time."""
        self._put(self._header(_TYPE_TIME_EXTEND, delta & _DELTA_MAX) + self._u32(delta >> 27))
        self._ts += delta

    def absolute(self, ts: int) -> None:
        """RINGBUF_TYPE_TIME_STAMP: set the running time (its top 5 bits come from the running time)."""
        low = ts & ((1 << 59) - 1)
        self._put(self._header(_TYPE_TIME_STAMP, low & _DELTA_MAX) + self._u32(low >> 27))
        self._ts = low | (self._ts & _TS_MSB)

    def padding(self, size: int, delta: int = 1) -> None:
        """A discarded event taking ``size`` bytes in all (header included; at least 8)."""
        if size < 8 or size % 4:
            raise ValueError("padding takes a multiple of 4 bytes, at least 8")
        if delta == 0:
            raise ValueError("padding with time_delta 0 is the null padding; use null_padding()")
        self._put(self._header(_TYPE_PADDING, delta) + self._u32(size - 4) + bytes(size - 8))
        self._ts += delta

    def null_padding(self) -> None:
        """The kernel's end-of-data marker: padding with time_delta 0 (rest of the page unused)."""
        self._put(self._header(_TYPE_PADDING, 0))

    # -- high level ------------------------------------------------------------

    def add(self, ts: int, payload: bytes, *, long_form: bool = False, absolute: bool = False) -> None:
        """Append an event at absolute time ``ts``, as the kernel would.

        A new page starts when the event does not fit (or there is none yet);
        a time extend goes in when the delta needs more than 27 bits; a time
        going backwards, or ``absolute``, gets an absolute time stamp.
        """
        padded_len = len(payload) + (-len(payload) % 4)
        size = 4 + padded_len + (4 if long_form or padded_len > 112 else 0)
        if size > self.page_size - self.data_start - 8:
            raise ValueError(f"a {len(payload)}-byte record does not fit a {self.page_size}-byte page")
        need_stamp = absolute or ts < self._ts or ts - self._ts > _DELTA_MAX
        if not self.pages or self.room < size + (8 if need_stamp else 0):
            self.begin_page(ts)
            need_stamp = absolute
        if need_stamp:
            if absolute or ts < self._ts:
                self.absolute(ts)
            else:
                self.time_extend(ts - self._ts)
        self.event(payload, ts - self._ts, long_form=long_form)

    def build(self) -> bytes:
        """The pages: header, data, then (for a stored count) the lost count, then junk."""
        out = bytearray()
        order = "little" if self.little else "big"
        for page in self.pages:
            commit = len(page.body)
            flags = 0
            tail = b""
            if page.missed:
                flags |= _MISSED_EVENTS
                if page.missed > 0:
                    flags |= _MISSED_STORED
                    tail = page.missed.to_bytes(self.commit_size, order)
            raw = bytearray(page.timestamp.to_bytes(8, order))
            raw += (commit | flags).to_bytes(self.commit_size, order)
            raw += page.body + tail
            if len(raw) > self.page_size:
                raise ValueError("no room for the stored lost-events count on a full page")
            raw += bytes([self.junk]) * (self.page_size - len(raw))
            out += raw
        return bytes(out)
