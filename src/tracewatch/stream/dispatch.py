"""Dispatch: hand each chunk of events to the handlers that asked for them.

Per chunk, events are split into one batch per event type (numpy columns);
each handler's ``where=`` filter is a vectorised mask over its batch, so
events a handler does not want never become Python objects.  Batch handlers
get their filtered batch; per-event handlers get :class:`Event` objects, all
types interleaved in time order.  Timers fire on trace time: a chunk is cut at
every timer deadline, so a timer sees exactly the events before it.

Stopping: :meth:`Dispatcher.stop_handling` (from any thread or a signal handler)
ends the handling at once, even in the middle of a handler's run of events:
no handler is called again, and what it would have been given is counted in
``dropped_at_stop``.

Handler errors: the user's traceback (tracewatch's own frames left out) and the
event are printed; ``on_error="stop"`` ends the run with :class:`HandlerError`,
``"skip"`` goes on with the next event.
"""

from __future__ import annotations

import fnmatch
import gc
import sys
import traceback
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, Sequence, TextIO

import numpy as np

from ..errors import HandlerError
from ..formats.event_format import EventFormat
from .chunk import EventChunk
from .filter import Filter
from .run_context import current_run, dispatching

__all__ = ["Dispatcher", "HandlerError", "pattern_matches", "current_trace_time"]

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def pattern_matches(pattern: str, fmt: EventFormat) -> bool:
    """Whether a handler pattern (``sched:*``, ``sys_enter``, ``*:*open*``) names this event."""
    if ":" in pattern:
        return fnmatch.fnmatchcase(f"{fmt.system}:{fmt.name}", pattern)
    return fnmatch.fnmatchcase(fmt.name, pattern)


@dataclass
class _Route:
    """The handlers of one event type, with their filters compiled for it."""

    batch: list[tuple[Callable, Filter | None]] = field(default_factory=list)  # (function, filter)
    event: list[tuple[Callable, Filter | None]] = field(default_factory=list)


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
        #: handler calls not made because the handling was stopped (counted like events_dispatched)
        self.dropped_at_stop = 0
        self._stopped = False
        self._routes: dict[int, _Route | None] = {}
        self._has_event_handlers = any(not h.batch for h in self.handlers)
        self._next_fire: list[int | None] = [None] * len(self.timers)
        self.last_ts: int | None = None
        #: trace time of the last event of the chunk being dispatched (set once per chunk)
        self.chunk_end_ts: int | None = None
        # what is being handled right now, for current_trace_time() and stop_handling(): a
        # per-event run (the list, the iterator map() walks, and where a stop records how many
        # events it cut off), else the time of a batch's last event or a timer's
        self._now_run: tuple[list[Any], Any, list[int | None]] | None = None
        self._now_ts: int | None = None

    # -- routing ---------------------------------------------------------------
    def route(self, fmt: EventFormat) -> _Route | None:
        """The handlers for ``fmt`` (compiled once per event type); None when nobody wants it."""
        if fmt.id in self._routes:
            return self._routes[fmt.id]
        r = _Route()
        for h in self.handlers:
            if not pattern_matches(h.pattern, fmt):
                continue
            per_type = getattr(h, "per_type", None)
            func = h.func if per_type is None else per_type(fmt)
            if func is None:
                continue
            flt = Filter.parse(h.where, fmt) if h.where else None
            (r.batch if h.batch else r.event).append((func, flt))
        route = r if (r.batch or r.event) else None
        self._routes[fmt.id] = route
        return route

    def prepare(self, formats: Iterable[EventFormat]) -> None:
        """Compile every route up front so a bad filter fails before the first event."""
        for fmt in formats:
            self.route(fmt)

    def batch_only(self) -> bool:
        """True when every handler takes batches and nothing depends on event order across types
        (no per-event handlers, timers or lost-event handlers): then a source may hand over
        whole-file batches per type."""
        return (all(h.batch for h in self.handlers) and not self.timers and not self.lost_handlers)

    def feed_batches(self, batches: Iterable[tuple[Any, np.ndarray]]) -> None:
        """Dispatch ready-made per-type batches (see :meth:`batch_only`)."""
        for batch, _pos in batches:
            n = len(batch)
            if n == 0:
                continue
            self.events_seen += n
            route = self.route(batch.format_)
            if route is None:
                continue
            self.chunk_end_ts = int(batch.common_ts[-1])
            with self._acting():
                for func, flt in route.batch:
                    b = batch if flt is None else batch.take_(flt.mask(batch))
                    if len(b):
                        self._call_batch(func, b)

    def wants(self, fmt: EventFormat) -> bool:
        return self.route(fmt) is not None

    # -- stopping --------------------------------------------------------------
    def stop_handling(self) -> None:
        """Call no handler again; what they would have been given counts in ``dropped_at_stop``.

        Safe from another thread or a signal handler: a per-event run in
        progress is cut after the event being handled (its iterator is moved to
        the end), so a slow handler is not called for the rest of a chunk.
        """
        self._stopped = True  # before looking at the run: a run started after this sees it
        run = self._now_run
        if run is not None:
            _cut(run)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _count_dropped(self, chunk: EventChunk) -> None:
        """Count the handler calls a chunk would have made (the stop came before it)."""
        for batch, _pos in chunk.batches(only=self.wants):
            route = self._routes[batch.format_.id]
            assert route is not None
            for _func, flt in route.batch + route.event:
                self.dropped_at_stop += len(batch) if flt is None else int(flt.mask(batch).sum())

    # -- feeding ---------------------------------------------------------------
    def feed(self, chunk: EventChunk) -> None:
        """Dispatch every event of ``chunk`` (time-ordered) to its handlers."""
        n = len(chunk)
        if n == 0:
            return
        self.events_seen += n
        self.chunk_end_ts = int(chunk.ts[-1])
        if self._stopped:
            self._count_dropped(chunk)
        else:
            with self._acting():
                self._feed(chunk)
        self.last_ts = int(chunk.ts[-1])

    def _feed(self, chunk: EventChunk) -> None:
        for cpu, count, _ts in chunk.losses():
            self.lost_events[cpu] = self.lost_events.get(cpu, 0) + max(count, 0)
            if count == 0:
                continue  # counted at an earlier mark (see LiveSession._count_losses)
            for f in self.lost_handlers:
                self._call(f, None, cpu, count)
        # Per-event handlers make a chunk's worth of Event tuples that live until the chunk is
        # done: left on, the cyclic GC would walk all of them again and again (~10% of the run).
        # They hold no cycles; anything cyclic a handler makes is collected after the chunk.
        gc_paused = self._has_event_handlers and gc.isenabled()
        if gc_paused:
            gc.disable()
        try:
            if not self.timers:
                self._dispatch(chunk)
            else:
                self._dispatch_with_timers(chunk)
        finally:
            if gc_paused:
                gc.enable()

    def _dispatch_with_timers(self, chunk: EventChunk) -> None:
        for i, t in enumerate(self.timers):
            if self._next_fire[i] is None:
                self._next_fire[i] = int(chunk.ts[0]) + t.interval_ns
        start, n, ts = 0, len(chunk), chunk.ts
        while start < n:
            if self._stopped:
                self._count_dropped(chunk.slice(start, n))
                return
            deadline = min(x for x in self._next_fire if x is not None)
            cut = int(np.searchsorted(ts, deadline, side="left"))
            if cut > start:
                self._dispatch(chunk.slice(start, min(cut, n)))
            if cut >= n or self._stopped:
                start = min(cut, n)
                continue
            self._fire_timers(int(ts[cut]))
            start = cut

    def _fire_timers(self, now: int) -> None:
        """Fire every timer whose deadline is at or before ``now`` (trace time)."""
        for i, t in enumerate(self.timers):
            nf = self._next_fire[i]
            fired = 0
            while nf is not None and nf <= now:
                self._now_ts = nf  # this firing's deadline: the trace time the timer stands for
                try:
                    self._call(t.func, None)
                finally:
                    self._now_ts = None
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
            for func, flt in route.batch:
                b = batch if flt is None else batch.take_(flt.mask(batch))
                if len(b):
                    self._call_batch(func, b)
            if not route.event:
                continue
            events: list[Any] | None = None
            for func, flt in route.event:
                if flt is None:
                    if events is None:
                        events = batch.events_()
                    pending.append((pos, events, func))
                else:
                    sel = np.flatnonzero(flt.mask(batch))
                    if len(sel) == 0:
                        continue
                    if events is None and len(sel) * 4 >= len(batch):
                        events = batch.events_()
                    evs = itemgetter(*sel.tolist())(events) if events is not None else batch.take_(sel).events_()
                    if len(sel) == 1 and events is not None:
                        evs = [evs]
                    pending.append((pos[sel], list(evs), func))
        if not pending:
            return
        if len(pending) == 1:
            _pos, evs, func = pending[0]
            self._run_one(func, evs)
            return
        # several handlers or types: time order across them (registration order on ties).
        # Each handler's own events are already in time order, so the merged order is a
        # sequence of runs, each a stretch of one handler's list: no event list is reordered.
        lengths = [len(e) for _p, e, _f in pending]
        total = sum(lengths)
        order = np.argsort(np.concatenate([p for p, _, _ in pending]), kind="stable")
        hid = np.repeat(np.arange(len(pending), dtype=np.int32), lengths)[order]
        cuts = np.flatnonzero(hid[1:] != hid[:-1]) + 1
        if len(cuts) * 4 > total:
            # handlers alternate at almost every event: one merged list, one call per event
            merged: list[Any] = []
            for _p, evs, _func in pending:
                merged.extend(evs)
            merged = list(itemgetter(*order.tolist())(merged))
            funcs = list(itemgetter(*hid.tolist())([func for _p, _e, func in pending]))
            self._run_zipped(funcs, merged)
            return
        bounds = np.concatenate(([0], cuts, [total]))
        sizes = np.diff(bounds).tolist()
        owners = hid[bounds[:-1]].tolist()
        cursor = [0] * len(pending)
        for k, (h, size) in enumerate(zip(owners, sizes)):
            if self._stopped:  # checked per run: stop_handling cuts the run in progress
                self.dropped_at_stop += sum(sizes[k:])
                return
            at = cursor[h]
            cursor[h] = at + size
            _p, evs, func = pending[h]
            self._run_one(func, evs if at == 0 and size == len(evs) else evs[at:at + size])

    # -- calling user code -----------------------------------------------------
    def _run_one(self, func: Callable, events: list[Any]) -> None:
        """``func(ev)`` for each event, in a C loop (``map``); on an error the policy
        decides, and the run goes on after the failing event; a stop cuts it."""
        self._run(events, lambda it, start: map(func, it), lambda i: func)

    def _run_zipped(self, funcs: list[Callable], events: list[Any]) -> None:
        """``funcs[i](events[i])`` for each i (handlers interleaved event by event)."""
        self._run(events, lambda it, start: map(_call_with, funcs if start == 0 else funcs[start:], it),
                  funcs.__getitem__)

    def _run(self, events: list[Any], calls: Callable[[Any, int], Iterator[Any]],
             func_at: Callable[[int], Callable]) -> None:
        """Drive ``calls(iterator over events[start:], start)`` to its end in C; a handler
        error goes to the policy (and the run resumes after it); a stop ends it, the events
        not handled counted in ``dropped_at_stop``."""
        self.events_dispatched += len(events)
        start = 0
        while start < len(events):
            seq = events if start == 0 else events[start:]
            it = iter(seq)
            cut: list[int | None] = []  # stop_handling puts there how many events it cut off
            self._now_run = run = (seq, it, cut)
            try:
                if self._stopped:  # stopped before the run was published: cut it here
                    _cut(run)
                _consume(calls(it, start))
                if cut:
                    self._dropped(cut[0])
                return
            except (KeyboardInterrupt, SystemExit, HandlerError, BrokenPipeError):
                raise
            except Exception as e:  # noqa: BLE001 - user code may raise anything
                # the iterator stands one past the event being handled (or, cut, at the end)
                left = cut[0] if cut else it.__length_hint__()
                failed = start + len(seq) - left - 1
                if cut:
                    self._dropped(left)
                self._handler_failed(func_at(failed), events[failed], e)
                if cut:
                    return
                start = failed + 1
            finally:
                self._now_run = None

    def _dropped(self, n: int | None) -> None:
        self.dropped_at_stop += n or 0
        self.events_dispatched -= n or 0

    def _call(self, func: Callable, ev: Any, *args: Any) -> None:
        try:
            func(*args)
        except (KeyboardInterrupt, SystemExit, HandlerError, BrokenPipeError):
            raise
        except Exception as e:  # noqa: BLE001
            self._handler_failed(func, ev, e)

    def _call_batch(self, func: Callable, b: Any) -> None:
        if self._stopped:
            self.dropped_at_stop += len(b)
            return
        self.events_dispatched += len(b)
        self._now_ts = int(b.common_ts[-1])
        try:
            self._call(func, None, b)
        finally:
            self._now_ts = None

    def call_hook(self, func: Callable, *args: Any) -> None:
        """Call a start/end hook under the same error policy as handlers."""
        with self._acting():
            self._call(func, None, *args)

    def _acting(self) -> ContextManager[None]:
        """This dispatcher is the one current_trace_time() asks while the block runs."""
        return dispatching(self)

    def trace_time_now(self) -> int | None:
        """The trace time of what is being handled: the event of a per-event handler, a
        batch's last event, a timer's deadline; else the end of the chunk (None before any)."""
        run = self._now_run
        if run is not None:
            events, it, cut = run
            left = cut[0] if cut else it.__length_hint__()
            i = len(events) - (left or 0) - 1  # the iterator stands one past the event
            if 0 <= i < len(events):
                return int(events[i].common_ts)
        if self._now_ts is not None:
            return self._now_ts
        return self.chunk_end_ts

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


def current_trace_time() -> int | None:
    """The trace time of what the calling handler is handling, or None outside dispatch.

    For ``dump()`` called without an event: the event of a per-event handler, a
    batch handler's last event, a timer's deadline, else the end of the chunk
    being dispatched (see :meth:`Dispatcher.trace_time_now`).
    """
    active = current_run().dispatchers
    return active[-1].trace_time_now() if active else None


def user_frame(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame outside tracewatch, for one-line error messages."""
    frames = [fr for fr in traceback.extract_tb(exc.__traceback__) if not fr.filename.startswith(_PACKAGE_DIR)]
    if not frames:
        return None
    fr = frames[-1]
    return f"{fr.filename}:{fr.lineno}"


try:
    from operator import call as _call_with  # 3.11+: calls in C
except ImportError:  # 3.10

    def _call_with(func: Callable[[Any], Any], ev: Any) -> Any:
        return func(ev)


#: exhausts an iterator in C (the run loops' ``map`` of handlers over events)
_consume = deque(maxlen=0).extend


def _cut(run: tuple[list[Any], Any, list[int | None]]) -> None:
    """End a per-event run after the event being handled: its iterator is moved to the end,
    and how many events that left out is appended to its cut list (only the first cut counts).

    Thread-safe without a lock: ``extend`` walks the ``map`` in C, calling two C methods
    (how many events remain, move to the end), so no bytecode runs in between and
    the thread walking the run cannot take an event between the count and the move.
    """
    seq, it, cut = run
    cut.extend(map(_call_with, (it.__length_hint__, partial(it.__setstate__, len(seq)))))
    del cut[1:]  # the move's None, and the counts of later cuts (nothing left by then)
