"""Symbol tables a trace carries beside its events.

* kallsyms (``/proc/kallsyms`` text): kernel addresses to function names, for
  ``%pS``/``%ps`` and the call-site columns of kmem and workqueue events;
* printk formats (``printk_formats`` text): the format strings that
  ``trace_printk()`` (``ftrace:bprint``) records point at;
* saved cmdlines (``saved_cmdlines`` text): pid to command name, for the
  ``comm-pid`` column of a report.

trace.dat stores each as the tracefs text, so one parser serves files and live
sessions.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["KernelSymbols", "Cmdlines", "TraceSymbols"]


class KernelSymbols:
    """Address -> function lookup over a kallsyms listing (sorted by address).

    A full ``/proc/kallsyms`` has ~120k lines and takes a few hundred ms to
    parse, so :meth:`deferred` keeps only a way to get the text and parses it
    the first time a symbol is asked for: decoding that never renders a symbol
    never pays for it.
    """

    def __init__(self, addrs: list[int] | None = None, names: list[str] | None = None,
                 modules: list[str | None] | None = None, kinds: list[str] | None = None, *,
                 text_source: Callable[[], str] | None = None) -> None:
        self._addrs = addrs or []
        self._names = names or []
        self._modules = modules or []
        #: the kallsyms type letter of each symbol ("T", "t", "A", ...); libtraceevent
        #: does not treat absolute ("A"/"a") symbols as functions
        self._kinds = kinds or []
        self._text_source = text_source
        self._function_table: tuple[list[int], list[str]] | None = None

    @classmethod
    def deferred(cls, text_source: Callable[[], str]) -> "KernelSymbols":
        """Symbols parsed from ``text_source()`` on first use."""
        return cls(text_source=text_source)

    def _ensure(self) -> None:
        if self._text_source is not None:
            source, self._text_source = self._text_source, None
            try:
                text = source()
            except OSError:
                text = ""
            parsed = KernelSymbols.parse(text)
            self._addrs, self._names, self._modules, self._kinds = (
                parsed._addrs, parsed._names, parsed._modules, parsed._kinds)
            self._function_table = None

    @property
    def addrs(self) -> list[int]:
        self._ensure()
        return self._addrs

    @property
    def names(self) -> list[str]:
        self._ensure()
        return self._names

    @property
    def modules(self) -> list[str | None]:
        self._ensure()
        return self._modules

    @property
    def kinds(self) -> list[str]:
        self._ensure()
        return self._kinds

    @classmethod
    def parse(cls, text: str) -> "KernelSymbols":
        """Parse ``/proc/kallsyms`` lines: ``ffffffff81000000 T _stext [module]``."""
        rows: list[tuple[int, str, str | None, str]] = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            mod = parts[3].strip("[]") if len(parts) > 3 else None
            rows.append((addr, parts[2], mod, parts[1]))
        # libtraceevent keeps its symbols in a list that each new line is pushed onto (so the
        # file's order reversed), then sorts it with glibc's qsort, a stable merge sort here:
        # among symbols at one address the last line of the file comes first.  Lookups depend
        # on that order (see lookup), so it is kept.
        rows.reverse()
        rows.sort(key=lambda r: r[0])
        return cls([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])

    def __len__(self) -> int:
        return len(self.addrs)

    def lookup(self, addr: int) -> tuple[str, int, int] | None:
        """The symbol containing ``addr``: (name, offset into it, symbol address), or None.

        The symbol libtraceevent's ``tep_find_function`` names, aliases included: it runs
        glibc's ``bsearch`` with a comparison that matches an address equal to a symbol's,
        or inside ``[symbol, next symbol)``.  Inside a symbol only the last of several
        symbols at one address has a non-empty range (the first line of the file: ``__do_softirq``
        before ``__softirqentry_text_start``); an exact address matches whichever of them the
        search probes first; past the last symbol nothing matches.
        """
        addrs, names = self._functions()
        i = bisect.bisect_right(addrs, addr) - 1
        if i < 0:
            return None
        if addrs[i] != addr:
            if i + 1 == len(addrs):
                return None  # libtraceevent's end marker has address 0: no range after the last symbol
            return names[i], addr - addrs[i], addrs[i]
        return names[self._bsearch_exact(addrs, addr)], 0, addr

    def _functions(self) -> tuple[list[int], list[str]]:
        """The symbols libtraceevent searches: not absolute ('A'/'a'), not ARM's '$' mapping symbols."""
        if self._function_table is None:
            kinds = self.kinds
            keep = [i for i, name in enumerate(self.names)
                    if not name.startswith("$") and (i >= len(kinds) or kinds[i] not in ("A", "a"))]
            if len(keep) == len(self.names):
                self._function_table = (self.addrs, self.names)
            else:
                self._function_table = ([self.addrs[i] for i in keep], [self.names[i] for i in keep])
        return self._function_table

    @staticmethod
    def _bsearch_exact(addrs: list[int], addr: int) -> int:
        """The index glibc's bsearch stops at for a key equal to some symbols' address."""
        lo, hi = 0, len(addrs)
        while lo < hi:
            mid = (lo + hi) // 2
            a = addrs[mid]
            if a == addr:
                return mid
            if addr < a:
                hi = mid
            elif mid + 1 < len(addrs) and addr < addrs[mid + 1]:
                return mid  # inside [a, next): cannot happen for an exact key, kept for clarity
            else:
                lo = mid + 1
        raise AssertionError("an exact address was not found")  # pragma: no cover

    def exact(self, addr: int) -> str | None:
        """The name of the symbol that starts exactly at ``addr``."""
        i = bisect.bisect_left(self.addrs, addr)
        if i < len(self.addrs) and self.addrs[i] == addr:
            return self.names[self._bsearch_exact(self.addrs, addr)]
        return None


@dataclass
class Cmdlines:
    """pid -> comm, from ``saved_cmdlines`` (later lines win)."""

    by_pid: dict[int, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Cmdlines":
        out: dict[int, str] = {}
        for line in text.splitlines():
            pid, _, comm = line.partition(" ")
            try:
                out[int(pid)] = comm
            except ValueError:
                continue
        return cls(out)

    def get(self, pid: int) -> str | None:
        return self.by_pid.get(pid)


def parse_printk_formats(text: str) -> dict[int, str]:
    """Parse ``printk_formats`` lines: ``0xffffffff82345678 : "fmt\\n"``.

    The value keeps the C escapes as written; print-format rendering unescapes.
    """
    out: dict[int, str] = {}
    for line in text.splitlines():
        addr, sep, rest = line.partition(" : ")
        if not sep:
            continue
        try:
            a = int(addr.strip(), 16)
        except ValueError:
            continue
        rest = rest.strip()
        if len(rest) >= 2 and rest[0] == '"' and rest[-1] == '"':
            rest = rest[1:-1]
        out[a] = rest
    return out


@dataclass
class TraceSymbols:
    """Everything beside the events that rendering needs."""

    kallsyms: KernelSymbols = field(default_factory=KernelSymbols)
    printk_formats: dict[int, str] = field(default_factory=dict)
    cmdlines: Cmdlines = field(default_factory=Cmdlines)
    long_size: int = 8
    little_endian: bool = True
