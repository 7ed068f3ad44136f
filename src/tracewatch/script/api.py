"""The decorators a tracewatch script uses: ``on``, ``on_batch``, ``every``, ``at_start``, ``at_end``, ``on_lost``,
and ``probe`` / ``on_probe`` for function probes (uprobes).

A script is a plain Python file::

    from tracewatch import on, on_batch, every, at_end, Map

    calls = Map(int)

    @on("raw_syscalls:sys_enter", where="common_pid != 0")
    def enter(ev):
        calls[ev.common_comm][ev.id] += 1

    @at_end
    def report():
        calls.print(top=10)

Function probes are asked for in the script and named in ``probe:`` form::

    from tracewatch import on, on_probe, probe

    @on_probe("libc:malloc(size=arg1)")                # the probe and its handler
    def malloc(ev):
        sizes.add(ev.size)

    enter, leave = probe("./prog:work", returns=True)  # "probe:work", "probe:work__return"

    @on(leave)
    def work_done(ev): ...

Decorators record handlers in the :class:`ScriptHandlers` that is current while
the script loads (the runner makes a fresh one per run and puts it in the run
context, :mod:`tracewatch.stream.run_context`); the functions are
returned unchanged, so a script stays importable and testable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..stream.run_context import current_run, set_current
from ..units import parse_duration

__all__ = [
    "on", "on_batch", "every", "at_start", "at_end", "on_lost", "probe", "on_probe",
    "ScriptHandlers", "EventHandler", "Timer", "parse_duration", "current_handlers",
]


@dataclass
class EventHandler:
    """A function bound to the events whose ``system:name`` matches ``pattern``."""

    pattern: str
    func: Callable[..., Any]
    where: str | None = None
    batch: bool = False
    #: a live run does not fail when no event matches (perf scripts name events a kernel may lack)
    optional: bool = False
    #: when set, the function for each matching event type (None: not this type), asked once per
    #: type: one handler whose per-type functions are called directly (perf scripts' adapters)
    per_type: Callable[[Any], Callable[..., Any] | None] | None = None

    @property
    def label(self) -> str:
        code = getattr(self.func, "__code__", None)
        where = f" ({code.co_filename}:{code.co_firstlineno})" if code else ""
        return f"{getattr(self.func, '__qualname__', self.func)}{where}"


@dataclass
class Timer:
    """A function called every ``interval_ns`` of trace time."""

    interval_ns: int
    func: Callable[[], Any]


@dataclass
class ScriptHandlers:
    """Everything a script registered."""

    events: list[EventHandler] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    start: list[Callable[[], Any]] = field(default_factory=list)
    end: list[Callable[[], Any]] = field(default_factory=list)
    lost: list[Callable[[int, int], Any]] = field(default_factory=list)
    #: events named by the script that no handler function takes (perf scripts' extra events, -e)
    extra_events: list[str] = field(default_factory=list)
    #: function probes asked for with probe(), @on_probe or -P (installed by a live run)
    probes: list[Any] = field(default_factory=list)

    def add_probe(self, spec: str, returns: bool = False) -> list[str]:
        """Ask for the probe ``spec`` (and its return probe with ``returns``); its ``probe:`` event names."""
        from .probes import ProbeRequest, probe_event_name, return_spec
        from ..sources.uprobes import parse_probe_spec

        parsed = parse_probe_spec(spec)
        specs = [parsed, return_spec(parsed)] if returns else [parsed]
        names = []
        for s in specs:
            req = ProbeRequest(s, probe_event_name(s))
            if req not in self.probes:
                self.probes.append(req)
            names.append(req.name)
        return names

    def event_patterns(self) -> list[str]:
        return [h.pattern for h in self.events] + list(self.extra_events)

    def live_events(self) -> tuple[list[str], list[str]]:
        """(required, optional) event patterns to enable for a live run.

        Catch-all patterns (``*``, ``*:*``) enable nothing by themselves: they
        receive whatever else is enabled.
        """
        required: list[str] = []
        optional: list[str] = []
        for h in self.events:
            if h.pattern in ("*", "*:*") or h.pattern.startswith("probe:"):
                continue  # probe: patterns are bound to the probes' events when they are installed
            target = optional if h.optional else required
            if h.pattern not in target:
                target.append(h.pattern)
        for p in self.extra_events:
            if p not in required and not p.startswith("probe:"):
                required.append(p)
        return required, optional

    def kernel_filter(self, fmt: Any) -> str | None:
        """The kernel filter text that keeps every event some handler of ``fmt`` wants, or None.

        None when a handler of this event has no ``where`` (it wants them all)
        or a filter cannot be said in the kernel's language.
        """
        from ..stream.dispatch import pattern_matches
        from ..stream.filter import Filter

        texts: list[str] = []
        for h in self.events:
            if not pattern_matches(h.pattern, fmt):
                continue
            if not h.where:
                return None
            text = Filter.parse(h.where, fmt).kernel_prefilter()
            if text is None:
                return None
            texts.append(text)
        if not texts:
            return None
        return texts[0] if len(texts) == 1 else " || ".join(f"({t})" for t in texts)


#: where decorators register outside any run (a script imported on its own, say by its tests)
_OUTSIDE_A_RUN = ScriptHandlers()


def current_handlers() -> ScriptHandlers:
    """The registry decorators write to: the loading script's (the run context's), else a spare one."""
    handlers = current_run().handlers
    return _OUTSIDE_A_RUN if handlers is None else handlers


def set_current_handlers(handlers: ScriptHandlers) -> ScriptHandlers:
    """Make ``handlers`` the registry decorators write to; returns the previous one."""
    previous = set_current("handlers", handlers)
    return _OUTSIDE_A_RUN if previous is None else previous


def _normalise_pattern(pattern: str) -> str:
    pattern = pattern.strip().replace("/", ":")
    return pattern


def on(pattern: str, where: str | None = None) -> Callable[[Callable], Callable]:
    """Call the function with each event (an ``Event``) whose ``system:name`` matches ``pattern``.

    ``pattern`` is a glob: ``"sched:sched_switch"``, ``"sched:*"``, ``"sys_enter"`` (any system).
    ``where`` is a filter in ftrace's syntax, applied before any Python object is built.
    """

    def register(func: Callable) -> Callable:
        current_handlers().events.append(EventHandler(_normalise_pattern(pattern), func, where, batch=False))
        return func

    return register


def on_batch(pattern: str, where: str | None = None) -> Callable[[Callable], Callable]:
    """Call the function with an ``EventBatch`` (numpy columns) of matching events of one type."""

    def register(func: Callable) -> Callable:
        current_handlers().events.append(EventHandler(_normalise_pattern(pattern), func, where, batch=True))
        return func

    return register


def every(interval: str | int | float) -> Callable[[Callable], Callable]:
    """Call the function every ``interval`` of trace time (``"1s"``, ``"100ms"``).

    Trace time, not wall time: a replayed file fires timers where a live run would.
    """
    ns = parse_duration(interval)
    if ns <= 0:
        raise ValueError("every(): the interval must be positive")

    def register(func: Callable) -> Callable:
        current_handlers().timers.append(Timer(ns, func))
        return func

    return register


def at_start(func: Callable) -> Callable:
    """Call the function once before the first event."""
    current_handlers().start.append(func)
    return func


def at_end(func: Callable) -> Callable:
    """Call the function once after the last event (also after Ctrl-C or a handler error)."""
    current_handlers().end.append(func)
    return func


def on_lost(func: Callable[[int, int], Any]) -> Callable:
    """Call ``func(cpu, count)`` where the ring buffer lost events.

    Live, a page that only says events were lost before it gets the number the
    kernel's per-CPU stats counted since (overrun + dropped); ``count`` is -1
    (unknown) only where nothing says how many: a trace.dat file's page without
    a count, or stats that had already counted the loss at an earlier call.
    """
    current_handlers().lost.append(func)
    return func


def probe(spec: str, *, returns: bool = False) -> Any:
    """Ask for a function probe; returns the name of its events for ``@on`` (``"probe:malloc"``).

    ``spec`` is a ``-P`` spec: ``"libc:malloc(size=arg1:u64)"``,
    ``"r:libc:malloc ret=$retval:x64"``, ``"./prog:work_*"`` (see
    ``tracewatch run --help``).  With ``returns=True`` the function's return
    probe is added too and a pair ``(entry, return)`` of names comes back, for
    pairing calls into durations.  ``probe:`` stands for the run's probe group:
    live, the probes are installed before tracing starts (libraries resolved
    through ``-p PID``'s maps or the ``--`` command) and removed at the end;
    with ``-i FILE``, the names match the recording's probe events.
    """
    names = current_handlers().add_probe(spec, returns=returns)
    return tuple(names) if returns else names[0]


def on_probe(spec: str, where: str | None = None, *, batch: bool = False) -> Callable[[Callable], Callable]:
    """``probe(spec)`` and ``@on`` (``@on_batch`` with ``batch=True``) its events, in one decorator.

    ::

        @on_probe("r:libc:malloc ret=$retval:x64", where="ret == 0")
        def malloc_failed(ev): ...
    """
    name = probe(spec)

    def register(func: Callable) -> Callable:
        current_handlers().events.append(EventHandler(name, func, where, batch=batch))
        return func

    return register
