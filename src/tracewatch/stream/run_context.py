"""The current run: what the script API, ``dump()`` and ``current_trace_time()`` reach.

A script's decorators, ``dump()`` and ``current_trace_time()`` are plain functions a
user calls without passing anything: they find the run they belong to here.  One
:class:`RunContext` holds the three things a run makes current (as trio keeps its
run's state in one ``_run_context``):

* ``handlers``: the ``ScriptHandlers`` the decorators write to while a script loads;
* ``recorder``: the ``FlightRecorder`` that ``dump()`` reaches;
* ``dispatchers``: the dispatchers feeding handlers right now, innermost last
  (``current_trace_time()`` asks the innermost).

It lives in a :class:`~contextvars.ContextVar`, so runs in different threads (or
asyncio tasks) do not see each other's; a thread a handler starts itself sees no
run unless started in a copy of the handler's context (``contextvars.copy_context()``).
The context is kept in the stream layer, below the script API and the recorder that
fill it, so that neither has to import the other.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Iterator

__all__ = ["RunContext", "current_run", "set_current", "dispatching"]


@dataclass(frozen=True)
class RunContext:
    """What one run has made current (None / empty: nothing)."""

    handlers: Any = None
    recorder: Any = None
    dispatchers: tuple[Any, ...] = ()


_NO_RUN = RunContext()
_RUN: ContextVar[RunContext] = ContextVar("tracewatch_run", default=_NO_RUN)


def current_run() -> RunContext:
    """The run of the calling code (an empty :class:`RunContext` outside any run)."""
    return _RUN.get()


def set_current(field: str, value: Any) -> Any:
    """Make ``value`` the run's ``field`` (``"handlers"`` or ``"recorder"``) from now on in
    this context; returns the previous value, for the caller to put back after the run."""
    run = _RUN.get()
    previous = getattr(run, field)
    _RUN.set(replace(run, **{field: value}))
    return previous


@contextmanager
def dispatching(dispatcher: Any) -> Iterator[None]:
    """``dispatcher`` is the innermost one feeding handlers while the block runs.

    Only the dispatcher stack is put back afterwards: what a hook made current
    meanwhile (a recorder, say) stays, as it did when each was a global of its own.
    """
    run = _RUN.get()
    _RUN.set(replace(run, dispatchers=run.dispatchers + (dispatcher,)))
    try:
        yield
    finally:
        run = _RUN.get()
        _RUN.set(replace(run, dispatchers=run.dispatchers[:-1]))
