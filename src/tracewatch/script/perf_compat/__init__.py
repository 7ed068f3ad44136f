"""Run ``perf script -s`` Python scripts unmodified over tracewatch's sources.

A perf script names its handlers after events (``sched__sched_switch(event_name,
context, common_cpu, common_secs, common_nsecs, common_pid, common_comm,
common_callchain, prev_comm, ...)``), may define ``trace_begin()``,
``trace_end()`` and ``trace_unhandled(event_name, context, fields)``, and
imports perf's helpers::

    sys.path.append(os.environ['PERF_EXEC_PATH'] + '/scripts/python/Perf-Trace-Util/lib/Perf/Trace')
    from perf_trace_context import *
    from Core import *
    from Util import *

:func:`prepare_perf_environment` makes those imports find tracewatch's own
``Core``, ``Util`` and ``perf_trace_context`` (in ``scripts/`` beside this
file, laid out as perf installs them).  :class:`PerfScript` registers the
script's handlers with the runner and, once the trace's formats are known
(:meth:`PerfScript.bind`), replaces them by adapters that call each function
with perf's arguments (see :mod:`.arguments`) and makes the ``define_*``
calls that fill Core's flag and symbol tables (see :mod:`.print_tables`).

Known differences from perf: ``common_comm`` comes from the trace's saved
cmdlines (``swapper`` for pid 0, ``:PID`` when unknown) instead of perf's
comm tracking; callchains are empty; perf_sample_dict has no ip, symbol, dso,
``attr`` bytes or registers and gives ``pid == tid == common_pid``; the
``define_*`` calls are made once per event type before ``trace_begin``
(perf repeats them before every event); a trailing ``char buf[]`` field
carries the rest of the record (perf passes an empty bytearray).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from ...errors import ScriptError
from ...stream.dispatch import user_frame
from ..api import EventHandler, ScriptHandlers
from .arguments import HandlerAdapterFactory, perf_comm_lookup
from .context import perf_script_context
from .print_tables import WalkState, symbol_definitions

__all__ = ["prepare_perf_environment", "is_perf_script", "PerfScript", "PERF_EXEC_PATH", "PERF_TRACE_DIR"]

#: what PERF_EXEC_PATH points to when the user has not set it
PERF_EXEC_PATH = str(Path(__file__).resolve().parent)
#: where scripts look for Core.py, Util.py and perf_trace_context.py
PERF_TRACE_DIR = os.path.join(PERF_EXEC_PATH, "scripts", "python", "Perf-Trace-Util", "lib", "Perf", "Trace")

_HOOKS = ("trace_begin", "trace_end", "trace_unhandled")
# system__event: a system name, a double underscore, an event name
_HANDLER_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_]*?)__([A-Za-z0-9_]+)$")


def prepare_perf_environment() -> None:
    """Make perf's helper modules importable before a script loads.

    Sets ``PERF_EXEC_PATH`` unless the user set it, empties Core's tables
    left by an earlier script in this process, and puts tracewatch's
    Trace directory on ``sys.path`` so that scripts which never append
    PERF_EXEC_PATH still import ``Core`` and ``Util``.  Appended, not
    prepended, so that it never hides the user's own modules; a script that
    appends a real perf's directory still gets tracewatch's modules first.
    """
    os.environ.setdefault("PERF_EXEC_PATH", PERF_EXEC_PATH)
    if PERF_TRACE_DIR not in sys.path:
        sys.path.append(PERF_TRACE_DIR)
    # perf runs each script in a fresh interpreter: start every script with empty
    # flag/symbol tables even when one process loads several scripts
    core = sys.modules.get("Core")
    if core is not None and os.path.dirname(getattr(core, "__file__", "")) == PERF_TRACE_DIR:
        core.flag_fields.clear()
        core.symbolic_fields.clear()


def _script_functions(namespace: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """The functions the script itself defines (not those it imported, e.g. from Core)."""
    module = namespace.get("__name__", "__main__")
    return {name: obj for name, obj in namespace.items()
            if inspect.isfunction(obj) and obj.__module__ == module}


def _event_handler_names(namespace: dict[str, Any]) -> dict[str, str]:
    """``{"sched__sched_switch": "sched:sched_switch", ...}`` for the script's handler functions."""
    out = {}
    for name in _script_functions(namespace):
        m = _HANDLER_NAME.match(name)
        if m and name not in _HOOKS:
            out[name] = f"{m.group(1)}:{m.group(2)}"
    return out


def is_perf_script(namespace: dict[str, Any]) -> bool:
    """Whether a loaded script is written for ``perf script -s`` (by its handler and hook names)."""
    functions = _script_functions(namespace)
    return any(name in functions for name in _HOOKS) or bool(_event_handler_names(namespace))


class PerfScript:
    """The perf-style handlers of one loaded script, registered with the runner's ``handlers``.

    ``__init__`` registers ``trace_begin``/``trace_end`` as start/end hooks and
    one placeholder per ``system__event`` function (so the events are known
    before a live run starts); :meth:`bind` swaps the placeholders for
    per-event-type adapters once the trace's formats are known.
    """

    def __init__(self, namespace: dict[str, Any], handlers: ScriptHandlers) -> None:
        self.namespace = namespace
        self.handlers = handlers
        functions = _script_functions(namespace)
        if "trace_begin" in functions:
            handlers.start.append(functions["trace_begin"])
        if "trace_end" in functions:
            handlers.end.append(functions["trace_end"])
        self._registered: list[EventHandler] = [
            EventHandler(pattern, _unbound_handler, optional=True) for pattern in _event_handler_names(namespace).values()
        ]
        handlers.events.extend(self._registered)

    def _callable(self, name: str) -> Callable[..., Any] | None:
        # perf looks names up in the script's globals at call time: anything callable counts
        obj = self.namespace.get(name)
        return obj if callable(obj) else None

    def bind(self, context: Any) -> None:
        """Prepare for a run over a source whose formats and cmdlines are in ``context``.

        Makes the ``define_*`` calls for the event types the script will see,
        then registers one adapter per handled event type, or, when the script
        has ``trace_unhandled``, one handler for every event that sends each
        to its function or to ``trace_unhandled``.
        """
        formats = sorted(context.formats.values(), key=lambda f: f.id)
        symbols = getattr(context, "symbols", None)
        by_pid = symbols.cmdlines.by_pid if symbols is not None else {}
        little = getattr(symbols, "little_endian", True) if symbols is not None else True
        factory = HandlerAdapterFactory(perf_script_context, perf_comm_lookup(by_pid), bool(little), names=by_pid)
        unhandled = self._callable("trace_unhandled")

        handled = {fmt.id: func for fmt in formats
                   if (func := self._callable(f"{fmt.system}__{fmt.name}")) is not None}
        seen = formats if unhandled is not None else [f for f in formats if f.id in handled]
        self._define_symbols(seen)

        for h in self._registered:
            if h in self.handlers.events:
                self.handlers.events.remove(h)
        if unhandled is not None:
            def adapter_for(fmt: Any) -> Callable[[Any], None]:
                func = handled.get(fmt.id)
                return factory.handler(fmt, func) if func is not None else factory.unhandled(fmt, unhandled)

            # one handler for every event; the dispatcher asks it for each type's adapter once
            # and calls that directly (no lookup per event)
            self._registered = [EventHandler("*", _unbound_handler, per_type=adapter_for)]
        else:
            self._registered = [EventHandler(fmt.full_name, factory.handler(fmt, handled[fmt.id]))
                                for fmt in formats if fmt.id in handled]
        self.handlers.events.extend(self._registered)

    def _define_symbols(self, formats: list) -> None:
        """Call the script's define_flag_*/define_symbolic_* with every print fmt table, as perf does."""
        state = WalkState()
        for fmt in formats:
            for func_name, args in symbol_definitions(fmt, state):
                func = self._callable(func_name)
                if func is None:
                    continue
                try:
                    func(*args)
                except Exception as e:  # noqa: BLE001 - a script's own define_* may raise anything
                    where = user_frame(e) or func_name
                    raise ScriptError(f"{where}: {type(e).__name__}: {e}") from None


def _unbound_handler(ev: Any) -> None:
    raise RuntimeError("perf script handler called before PerfScript.bind(context)")
