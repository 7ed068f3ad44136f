"""History helpers: stateful trigger criteria in one line each, bounded in memory.

    fails = Window("10ms")                       # per-key sliding window of timestamps
    @on("raw_syscalls:sys_exit", where="id == 262 && ret < 0")     # newfstatat failing
    def failed(ev):
        if fails.reached(ev.common_pid, ev.common_ts, 5):          # 5 within 10 ms, once per burst
            dump(reason=f"{ev.common_comm}: 5 failing newfstatat", event=ev, after="2s")

    seq = EventSequence("sys_enter", "sched_switch", within="10ms")     # A then B on the same thread
    m = seq.feed("sys_enter", ev.common_pid, ev.common_ts)         # a SequenceMatch when B completes it

    slow = Threshold(over="50ms")                                  # durations from entry/exit pairing
    slow.enter(ev.common_pid, ev.common_ts, data=ev.fd)
    s = slow.exit(ev.common_pid, ev.common_ts)                     # a SlowCall when it took more than 50 ms

Times are trace times in ns (``ev.common_ts``), so a replayed file triggers
where the live run did.  Every helper keeps at most ``max_keys`` keys (the
least recently used is evicted and counted in ``evicted``) and a window keeps
at most ``max_per_key`` timestamps per key, so a run of weeks stays bounded.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Hashable, NamedTuple

from ..script.api import parse_duration
from ..script.pairing import Pairing

__all__ = ["Window", "EventSequence", "Sequence", "SequenceMatch", "Threshold", "SlowCall"]


def _ns(value: str | int | float, what: str) -> int:
    ns = parse_duration(value)
    if ns <= 0:
        raise ValueError(f"{what} must be a positive duration, not {value!r}")
    return ns


class _Keyed:
    """Per-key state in least-recently-used order, at most ``max_keys`` keys."""

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._state: OrderedDict[Hashable, Any] = OrderedDict()
        self.evicted = 0

    def _get(self, key: Hashable, make: Any) -> Any:
        st = self._state.get(key)
        if st is None:
            if len(self._state) >= self.max_keys:
                self._state.popitem(last=False)
                self.evicted += 1
            st = self._state[key] = make()
        else:
            self._state.move_to_end(key)
        return st

    def forget(self, key: Hashable) -> None:
        """Drop the state of ``key`` (e.g. on ``sched_process_exit``)."""
        self._state.pop(key, None)

    def __len__(self) -> int:
        """Keys held."""
        return len(self._state)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._state


class Window(_Keyed):
    """Per-key sliding windows over trace time: how many events of a key in the last ``span``.

    ``add(key, ts)`` records an event and returns the count in ``(ts - span, ts]``;
    ``reached(key, ts, n)`` records one and says True once when the count
    reaches ``n``, re-arming only after the key has been quiet for a whole
    ``span`` (so a burst fires once, however long it lasts).  Timestamps of a
    key must not go backwards (they come from a time-ordered stream).
    """

    def __init__(self, span: str | int | float = "1s", *, max_keys: int = 100_000,
                 max_per_key: int = 65_536) -> None:
        super().__init__(max_keys)
        self.span_ns = _ns(span, "span")
        self.max_per_key = max_per_key
        self.saturated = 0  # events that pushed out a timestamp still inside the window

    def _make(self) -> list:
        # [timestamps in the window, armed]
        return [deque(maxlen=self.max_per_key), True]

    def add(self, key: Hashable, ts: int) -> int:
        """Record an event of ``key`` at ``ts``; the number of its events in the window ending at ``ts``."""
        st = self._get(key, self._make)
        q: deque = st[0]
        start = ts - self.span_ns
        while q and q[0] <= start:
            q.popleft()
        if not q:
            st[1] = True  # quiet for a whole span: a new burst may fire again
        if len(q) == q.maxlen:
            self.saturated += 1
        q.append(ts)
        return len(q)

    def reached(self, key: Hashable, ts: int, n: int) -> bool:
        """Record an event; True exactly once per burst, when the key's count reaches ``n``."""
        count = self.add(key, ts)
        st = self._state[key]
        if count >= n and st[1]:
            st[1] = False
            return True
        return False

    def count(self, key: Hashable, now: int | None = None) -> int:
        """Events of ``key`` in the window ending at ``now`` (default: its newest event)."""
        st = self._state.get(key)
        if st is None or not st[0]:
            return 0
        q = st[0]
        end = q[-1] if now is None else now
        start = end - self.span_ns
        return sum(1 for t in q if start < t <= end)

    def rate(self, key: Hashable, now: int | None = None) -> float:
        """Events of ``key`` per second over the window ending at ``now``."""
        return self.count(key, now) * 1e9 / self.span_ns


class SequenceMatch(NamedTuple):
    """A completed sequence: the key, when its first and last steps happened, and the time between."""

    key: Hashable
    start_ts: int
    end_ts: int
    duration: int


class EventSequence(_Keyed):
    """Steps that must happen in order for one key (a thread) within a time: ``EventSequence("A", "B", within="10ms")``.

    Feed every step: ``feed(step, key, ts)``; it returns a
    :class:`SequenceMatch` when ``step`` completes the sequence, else None.
    The first step (re)starts the sequence of its key; a step that is not the
    next one expected is ignored; a sequence whose time ran out is dropped
    (and restarted if the step is the first one).  Step names are any
    strings, e.g. event names, so ``feed(ev.name_(), ev.common_pid, ev.common_ts)``
    works when the handler is shared.
    """

    def __init__(self, *steps: str, within: str | int | float, max_keys: int = 100_000) -> None:
        super().__init__(max_keys)
        if len(steps) < 2:
            raise ValueError("a sequence has at least two steps")
        self.steps = tuple(steps)
        self.within_ns = _ns(within, "within")
        self.matches = 0
        self.expired = 0

    def feed(self, step: str, key: Hashable, ts: int) -> SequenceMatch | None:
        """Record ``step`` for ``key`` at ``ts``; a match when it completes the sequence."""
        st = self._state.get(key)
        if st is not None:
            start_ts, nxt = st
            if ts - start_ts > self.within_ns:
                self.expired += 1
                del self._state[key]
                st = None
            elif step == self.steps[nxt]:
                if nxt + 1 == len(self.steps):
                    del self._state[key]
                    self.matches += 1
                    return SequenceMatch(key, start_ts, ts, ts - start_ts)
                self._state[key] = (start_ts, nxt + 1)
                self._state.move_to_end(key)
                return None
        if step == self.steps[0]:
            self._get(key, lambda: None)
            self._state[key] = (ts, 1)
        return None

    def in_progress(self, key: Hashable) -> int:
        """How many steps of ``key``'s current sequence have happened (0: none)."""
        st = self._state.get(key)
        return 0 if st is None else st[1]


#: the name scripts of the first release used; kept so they run unchanged (it shadowed
#: typing.Sequence in readers' minds, hence EventSequence)
Sequence = EventSequence


class SlowCall(NamedTuple):
    """A paired call that took longer than the threshold."""

    key: Hashable
    start_ts: int
    duration: int
    data: Any


class Threshold:
    """Calls that take more than ``over``: entry/exit pairing (:class:`~tracewatch.script.pairing.Pairing`) with a limit.

    ``enter(key, ts, data)`` on the entry event (sys_enter, a ``p:`` uprobe),
    ``exit(key, ts)`` on the exit: a :class:`SlowCall` when the call took more
    than ``over``, else None (fast calls and exits without an entry).
    ``pairing`` is the underlying :class:`Pairing`, with its counters
    (orphans, dropped, evicted); ``max_open`` bounds the keys with open calls.
    """

    def __init__(self, over: str | int | float, *, max_open: int = 1 << 16, max_depth: int = 64) -> None:
        self.over_ns = _ns(over, "over")
        self.pairing = Pairing(max_open=max_open, max_depth=max_depth)
        self.slow = 0

    def enter(self, key: Hashable, ts: int, data: Any = None, cpu: int | None = None) -> None:
        self.pairing.enter(key, ts, data, cpu)

    def exit(self, key: Hashable, ts: int) -> SlowCall | None:
        r = self.pairing.exit(key, ts)
        if r is None or r[0] <= self.over_ns:
            return None
        self.slow += 1
        return SlowCall(key, ts - r[0], r[0], r[1])

    def lost(self, cpu: int | None = None) -> int:
        """Events were lost: drop open calls whose exit may be gone (see :meth:`Pairing.lost`)."""
        return self.pairing.lost(cpu)

    def __len__(self) -> int:
        return len(self.pairing)
