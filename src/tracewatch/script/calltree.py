"""Function calls from entry and return events: durations, depth, call trees.

Every thread has its own stack of open calls.  An entry event pushes; the
return event of the same function pops it and gives a :class:`Call` with its
duration and depth (0: the outermost traced call of the thread)::

    stacks = CallStacks()
    stacks.enter(tid, "outer", ts)
    stacks.enter(tid, "leaf", ts2)
    call, lost = stacks.exit(tid, "leaf", ts3)    # Call(..., depth=1), []

Real traces are not always tidy, and what goes wrong is counted, not hidden:

* ``orphans``: a return with no open entry of its function on the thread
  (the call began before tracing started, or its entry was lost);
* ``unreturned``: calls left on the stack above a returning function (their
  return was lost, or they left by longjmp / an exception): they come back in
  ``lost`` and are closed with no duration;
* ``overflows``: entries dropped because a stack grew past ``max_depth``.

:class:`CallGraph` prints an indented call tree per thread, the way the
kernel's function_graph tracer does for kernel code: a call with traced
children opens ``func() {`` and closes ``}`` with its duration, a leaf is one
line ``func();``, and durations carry function_graph's marks (``+`` over
10 us, ``!`` over 100 us, ``#`` 1 ms, ``*`` 10 ms, ``@`` 100 ms, ``$`` 1 s)::

    thread 4242 (prog)
      DURATION       FUNCTION CALLS
                   |  outer() {
                   |    middle() {
        0.712 us   |      leaf();
        0.301 us   |      leaf();
        5.220 us   |    } /* middle */
    + 12.104 us    |  } /* outer */
"""

from __future__ import annotations

import sys
from typing import Callable, Hashable, NamedTuple, TextIO

__all__ = ["Call", "CallStacks", "CallGraph", "duration_mark", "format_duration"]


class Call(NamedTuple):
    """One finished (or abandoned) call."""

    tid: int
    function: str
    start_ts: int  # ns
    duration: int | None  # ns; None when its return was never seen
    depth: int  # 0: outermost traced call on the thread


class _Frame:
    __slots__ = ("function", "ts", "printed", "data")

    def __init__(self, function: str, ts: int, data: object = None) -> None:
        self.function = function
        self.ts = ts
        self.printed = False  # CallGraph: its "f() {" line is out
        self.data = data


class CallStacks:
    """Per-thread stacks of open calls (keys are thread ids, or any hashable)."""

    def __init__(self, max_depth: int = 1024) -> None:
        self.max_depth = max_depth
        self._stacks: dict[Hashable, list[_Frame]] = {}
        self.completed = 0
        self.orphans = 0
        self.unreturned = 0
        self.overflows = 0

    def enter(self, tid: Hashable, function: str, ts: int, data: object = None) -> int:
        """Open a call; returns its depth."""
        st = self._stacks.get(tid)
        if st is None:
            st = self._stacks[tid] = []
        if len(st) >= self.max_depth:
            st.pop(0)
            self.overflows += 1
        st.append(_Frame(function, ts, data))
        return len(st) - 1

    def exit(self, tid: Hashable, function: str, ts: int) -> tuple[Call, list[Call]] | None:
        """Close the newest open call of ``function`` on ``tid``.

        Returns ``(call, lost)`` where ``lost`` are calls above it that never
        returned (innermost first), or None for an orphan return.
        """
        frames = self._pop_to(tid, function)
        if frames is None:
            return None
        depth, frame, above = frames
        self.completed += 1
        lost = [Call(tid, f.function, f.ts, None, depth + 1 + i) for i, f in reversed(list(enumerate(above)))]
        return Call(tid, function, frame.ts, ts - frame.ts, depth), lost

    def _pop_to(self, tid: Hashable, function: str) -> tuple[int, _Frame, list[_Frame]] | None:
        st = self._stacks.get(tid)
        if st:
            for i in range(len(st) - 1, -1, -1):
                if st[i].function == function:
                    frame = st[i]
                    above = st[i + 1 :]
                    del st[i:]
                    self.unreturned += len(above)
                    if not st:
                        del self._stacks[tid]
                    return i, frame, above
        self.orphans += 1
        return None

    def depth(self, tid: Hashable) -> int:
        st = self._stacks.get(tid)
        return len(st) if st else 0

    def open_calls(self, now: int | None = None) -> list[Call]:
        """Calls still open (outermost first per thread); ``duration`` is ``now - start`` when given."""
        return [Call(tid, f.function, f.ts, None if now is None else now - f.ts, d)  # type: ignore[arg-type]
                for tid, st in self._stacks.items() for d, f in enumerate(st)]

    def forget(self, tid: Hashable) -> int:
        """Drop a thread's open calls (it exited); returns how many."""
        st = self._stacks.pop(tid, None)
        return len(st) if st else 0

    def counters(self) -> dict[str, int]:
        return {"completed": self.completed, "orphans": self.orphans, "unreturned": self.unreturned,
                "overflows": self.overflows, "open": sum(len(s) for s in self._stacks.values())}


# --------------------------------------------------------------------------- printing

_MARKS = ((1_000_000_000, "$"), (100_000_000, "@"), (10_000_000, "*"), (1_000_000, "#"),
          (100_000, "!"), (10_000, "+"))


def duration_mark(ns: int) -> str:
    """function_graph's mark for a duration: ``$ @ * # ! +`` or a space."""
    for limit, mark in _MARKS:
        if ns > limit:
            return mark
    return " "


def format_duration(ns: int | None) -> str:
    """``'+  12.104 us'``: the 14-column duration field of a call-graph line."""
    if ns is None:
        return " " * 14
    return f"{duration_mark(ns)} {ns / 1000:>9.3f} us"


class CallGraph:
    """Builds function_graph-style text from entry and return events.

    ``by_thread`` (default): lines are kept per thread and :meth:`finish`
    prints one tree per thread; otherwise every line is printed as it is
    known, prefixed by its thread id.  ``comm(tid)`` names threads in
    headers.  ``max_lines`` bounds what is kept in memory (the rest is
    counted and reported).
    """

    def __init__(self, out: TextIO | None = None, *, by_thread: bool = True,
                 comm: Callable[[int], str] | None = None, max_lines: int = 200_000) -> None:
        self.out = out
        self.by_thread = by_thread
        self.comm = comm
        self.max_lines = max_lines
        self.stacks = CallStacks()
        self._lines: dict[int, list[str]] = {}
        self._kept = 0
        self._dropped: dict[int, int] = {}
        self.calls = 0

    def _out(self) -> TextIO:
        return self.out or sys.stdout

    def _emit(self, tid: int, depth: int, text: str, duration: int | None = None) -> None:
        line = f"{format_duration(duration)} |  {'  ' * depth}{text}"
        if not self.by_thread:
            self._out().write(f"{tid:>7} {line}\n")
            return
        if self._kept >= self.max_lines:
            self._dropped[tid] = self._dropped.get(tid, 0) + 1
            return
        self._kept += 1
        lines = self._lines.get(tid)
        if lines is None:
            lines = self._lines[tid] = []
        lines.append(line)

    def enter(self, tid: int, function: str, ts: int) -> None:
        st = self.stacks._stacks.get(tid)
        if st:
            top = st[-1]
            if not top.printed:
                self._emit(tid, len(st) - 1, f"{top.function}() {{")
                top.printed = True
        self.stacks.enter(tid, function, ts)

    def exit(self, tid: int, function: str, ts: int) -> Call | None:
        st = self.stacks._stacks.get(tid)
        frames = self.stacks._pop_to(tid, function) if st else None
        if frames is None:
            if not st:
                self.stacks.orphans += 1
            return None
        depth, frame, above = frames
        self.stacks.completed += 1
        self.calls += 1
        for d, f in reversed(list(enumerate(above, depth + 1))):
            if not f.printed:
                self._emit(tid, d, f"{f.function}() {{")
            self._emit(tid, d, f"}} /* {f.function}: no return seen */")
        duration = ts - frame.ts
        if frame.printed:
            self._emit(tid, depth, f"}} /* {function} */", duration)
        else:
            self._emit(tid, depth, f"{function}();", duration)
        return Call(tid, function, frame.ts, duration, depth)

    def finish(self, now: int | None = None) -> None:
        """Close what is still open (``still running``) and print the trees (``by_thread``)."""
        for tid, st in list(self.stacks._stacks.items()):
            for d in range(len(st) - 1, -1, -1):
                f = st[d]
                if not f.printed:
                    self._emit(tid, d, f"{f.function}() {{")
                self._emit(tid, d, f"}} /* {f.function}: still running at the end */",
                           None if now is None else now - f.ts)
            del self.stacks._stacks[tid]
        if not self.by_thread:
            return
        out = self._out()
        first = True
        for tid in sorted(set(self._lines) | set(self._dropped)):
            if not first:
                out.write("\n")
            first = False
            name = self.comm(tid) if self.comm else None
            out.write(f"thread {tid}" + (f" ({name})" if name else "") + "\n")
            out.write(f"{'DURATION':>12}   |  FUNCTION CALLS\n")
            for line in self._lines.get(tid, ()):
                out.write(line + "\n")
            if self._dropped.get(tid):
                out.write(f"... {self._dropped[tid]} more lines not kept (max_lines={self.max_lines})\n")
        self._lines.clear()
        self._dropped.clear()
        self._kept = 0
