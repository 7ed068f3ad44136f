"""Dispatch: hand each chunk of events to the handlers that asked for them.

Per chunk, events are split into one batch per event type (numpy columns);
each handler's ``where=`` filter is a vectorised mask over its batch, so
events a handler does not want never become Python objects.  Batch handlers
get their filtered batch; per-event handlers get :class:`Event` objects, all
types interleaved in time order.  Timers fire on trace time: a chunk is cut at
every timer deadline, so a timer sees exactly the events before it.

Handler errors: the user's traceback (tracewatch's own frames left out) and the
event are printed; ``on_error="stop"`` ends the run with :class:`HandlerError`,
``"skip"`` goes on with the next event.
"""

from __future__ import annotations

import fnmatch
import sys
import traceback
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

import numpy as np

from ..errors import ScriptError
from ..formats.event_format import EventFormat
from .chunk import EventChunk
from .filter import Filter

__all__ = ["Dispatcher", "HandlerError", "pattern_matches"]

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


class HandlerError(ScriptError):
    """A handler raised and the run was told to stop (``--on-error=stop``)."""


def pattern_matches(pattern: str, fmt: EventFormat) -> bool:
    """Whether a handler pattern (``sched:*``, ``sys_enter``, ``*:*open*``) names this event."""
    if ":" in pattern:
        return fnmatch.fnmatchcase(f"{fmt.system}:{fmt.name}", pattern)
    return fnmatch.fnmatchcase(fmt.name, pattern)


@dataclass
class _Route:
    """The handlers of one event type, with their filters compiled for it."""

    batch: list[tuple[Any, Filter | None]] = field(default_factory=list)
    event: list[tuple[Any, Filter | None]] = field(default_factory=list)


class Dispatcher:
    """Feeds chunks to handlers; owns timers, error policy and counters.

    ``handlers``: objects with ``pattern``, ``func``, ``where``, ``batch``;
    ``timers``: objects with ``interval_ns`` and ``func``; ``lost``: functions
    ``(cpu, count)``.
    """

    def __init__(
        self,
        handlers: Sequence[Any],
        timers: Sequence[Any] = (),
        lost: Sequence[Callable[[int, int], Any]] = (),
        *,
        on_error: str = "stop",
        err: TextIO | None = None,
        max_error_reports: int = 10,
    ) -> None:
        if on_error not in ("stop", "skip"):
            raise ValueError("on_error must be 'stop' or 'skip'")
        self.handlers = list(handlers)
        self.timers = list(timers)
        self.lost_handlers = list(lost)
        self.on_error = on_error
        self.err = err
        self.max_error_reports = max_error_reports
        self.errors = 0
        self.events_seen = 0
        self.events_dispatched = 0
        self.lost_events: dict[int, int] = {}
        self._routes: dict[int, _Route | None] = {}
        self._next_fire: list[int | None] = [None] * len(self.timers)
        self.last_ts: int | None = None

    # -- routing ---------------------------------------------------------------
    def route(self, fmt: EventFormat) -> _Route | None:
        """The handlers for ``fmt`` (compiled once per event type); None when nobody wants it."""
        if fmt.id in self._routes:
            return self._routes[fmt.id]
        r = _Route()
        for h in self.handlers:
            if not pattern_matches(h.pattern, fmt):
                continue
            flt = Filter.parse(h.where, fmt) if h.where else None
            (r.batch if h.batch else r.event).append((h, flt))
        route = r if (r.batch or r.event) else None
        self._routes[fmt.id] = route
        return route

    def prepare(self, formats: Iterable[EventFormat]) -> None:
        """Compile every route up front so a bad filter fails before the first event."""
        for fmt in formats:
            self.route(fmt)

    def wants(self, fmt: EventFormat) -> bool:
        return self.route(fmt) is not None

    # -- feeding ---------------------------------------------------------------
    def feed(self, chunk: EventChunk) -> None:
        """Dispatch every event of ``chunk`` (time-ordered) to its handlers."""
        n = len(chunk)
        if n == 0:
            return
        self.events_seen += n
        for cpu, count, _ts in chunk.losses():
            self.lost_events[cpu] = self.lost_events.get(cpu, 0) + max(count, 0)
            for f in self.lost_handlers:
                self._call(f, None, cpu, count)
        if not self.timers:
            self._dispatch(chunk)
        else:
            self._dispatch_with_timers(chunk)
        self.last_ts = int(chunk.ts[-1])

    def _dispatch_with_timers(self, chunk: EventChunk) -> None:
        for i, t in enumerate(self.timers):
            if self._next_fire[i] is None:
                self._next_fire[i] = int(chunk.ts[0]) + t.interval_ns
        start, n, ts = 0, len(chunk), chunk.ts
        while start < n:
            deadline = min(x for x in self._next_fire if x is not None)
            cut = int(np.searchsorted(ts, deadline, side="left"))
            if cut > start:
                self._dispatch(chunk.slice(start, min(cut, n)))
            if cut >= n:
                break
            self._fire_timers(int(ts[cut]))
            start = cut

    def _fire_timers(self, now: int) -> None:
        """Fire every timer whose deadline is at or before ``now`` (trace time)."""
        for i, t in enumerate(self.timers):
            nf = self._next_fire[i]
            fired = 0
            while nf is not None and nf <= now:
                self._call(t.func, None)
                nf += t.interval_ns
                fired += 1
                if fired >= 1000:  # a long gap in the trace: don't replay a million empty periods
                    nf = now + t.interval_ns - (now - nf) % t.interval_ns
                    break
            self._next_fire[i] = nf

    def _dispatch(self, chunk: EventChunk) -> None:
        pending: list[tuple[np.ndarray, list[Any], Callable]] = []
        for batch, pos in chunk.batches(only=self.wants):
            route = self._routes[batch.format_.id]
            assert route is not None
            for h, flt in route.batch:
                b = batch if flt is None else batch.take_(flt.mask(batch))
                if len(b):
                    self.events_dispatched += len(b)
                    self._call(h.func, None, b)
            if not route.event:
                continue
            events: list[Any] | None = None
            for h, flt in route.event:
                if flt is None:
                    if events is None:
                        events = batch.events_()
                    pending.append((pos, events, h.func))
                else:
                    sel = np.flatnonzero(flt.mask(batch))
                    if len(sel) == 0:
                        continue
                    if events is None and len(sel) * 4 >= len(batch):
                        events = batch.events_()
                    evs = itemgetter(*sel.tolist())(events) if events is not None else batch.take_(sel).events_()
                    if len(sel) == 1 and events is not None:
                        evs = [evs]
                    pending.append((pos[sel], list(evs), h.func))
        if not pending:
            return
        if len(pending) == 1:
            _pos, evs, func = pending[0]
            self.events_dispatched += len(evs)
            self._run_one(func, evs)
            return
        # several handlers or types: interleave in time order (stable: registration order on ties)
        positions = np.concatenate([p for p, _, _ in pending])
        order = np.argsort(positions, kind="stable").tolist()
        all_events: list[Any] = []
        all_funcs: list[Callable] = []
        for _p, evs, func in pending:
            all_events.extend(evs)
            all_funcs.extend([func] * len(evs))
        if len(order) > 1:
            pick = itemgetter(*order)
            all_events = list(pick(all_events))
            all_funcs = list(pick(all_funcs))
        self.events_dispatched += len(all_events)
        self._run_many(all_funcs, all_events)

    # -- calling user code -----------------------------------------------------
    def _run_one(self, func: Callable, events: list[Any]) -> None:
        start = 0
        while True:
            ev = None
            try:
                for ev in events if start == 0 else events[start:]:
                    func(ev)
                return
            except (KeyboardInterrupt, SystemExit, HandlerError, BrokenPipeError):
                raise
            except Exception as e:  # noqa: BLE001 - user code may raise anything
                self._handler_failed(func, ev, e)
                start = _index_from(events, ev, start) + 1

    def _run_many(self, funcs: list[Callable], events: list[Any]) -> None:
        start = 0
        while True:
            ev = f = None
            try:
                for f, ev in zip(funcs[start:] if start else funcs, events[start:] if start else events):
                    f(ev)
                return
            except (KeyboardInterrupt, SystemExit, HandlerError, BrokenPipeError):
                raise
            except Exception as e:  # noqa: BLE001
                self._handler_failed(f, ev, e)
                i = start
                while i < len(events) and not (events[i] is ev and funcs[i] is f):
                    i += 1
                start = i + 1

    def _call(self, func: Callable, ev: Any, *args: Any) -> None:
        try:
            func(*args)
        except (KeyboardInterrupt, SystemExit, HandlerError, BrokenPipeError):
            raise
        except Exception as e:  # noqa: BLE001
            self._handler_failed(func, ev, e)

    def call_hook(self, func: Callable, *args: Any) -> None:
        """Call a start/end hook under the same error policy as handlers."""
        self._call(func, None, *args)

    def _handler_failed(self, func: Callable | None, ev: Any, exc: BaseException) -> None:
        self.errors += 1
        if self.errors <= self.max_error_reports:
            self._report(func, ev, exc)
        elif self.errors == self.max_error_reports + 1:
            print("tracewatch: (further handler errors are counted, not shown)", file=self._err())
        if self.on_error == "stop":
            where = user_frame(exc)
            raise HandlerError(
                f"{where}: {type(exc).__name__}: {exc}" if where else f"{type(exc).__name__}: {exc}"
            ) from None

    def _err(self) -> TextIO:
        return self.err or sys.stderr

    def _report(self, func: Callable | None, ev: Any, exc: BaseException) -> None:
        out = self._err()
        name = getattr(func, "__qualname__", repr(func))
        print(f"tracewatch: handler {name} raised {type(exc).__name__}: {exc}", file=out)
        frames = [fr for fr in traceback.extract_tb(exc.__traceback__) if not fr.filename.startswith(_PACKAGE_DIR)]
        for fr in frames:
            print(f'  File "{fr.filename}", line {fr.lineno}, in {fr.name}', file=out)
            if fr.line:
                print(f"    {fr.line}", file=out)
        if ev is not None:
            try:
                print(f"  event: {str(ev).strip()}", file=out)
            except Exception:  # noqa: BLE001 - never fail while reporting a failure
                print(f"  event: {ev!r}", file=out)


def user_frame(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame outside tracewatch, for one-line error messages."""
    frames = [fr for fr in traceback.extract_tb(exc.__traceback__) if not fr.filename.startswith(_PACKAGE_DIR)]
    if not frames:
        return None
    fr = frames[-1]
    return f"{fr.filename}:{fr.lineno}"


def _index_from(events: list[Any], ev: Any, start: int) -> int:
    for i in range(start, len(events)):
        if events[i] is ev:
            return i
    return len(events)
