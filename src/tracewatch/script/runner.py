"""Load a user's script and run it over an event source.

``ScriptRunner`` executes the script file as ``__main__`` with its own
``sys.argv`` (as ``perf script -s`` does), collects what its decorators
registered (or, for a ``perf script`` script, what its handler names say),
then feeds the source's chunks to a :class:`~tracewatch.stream.dispatch.Dispatcher`.
End hooks run on every way out: the end of the input, a stop (a live source's
duration, Ctrl-C, SIGTERM: the handling ends promptly, see
:meth:`Dispatcher.stop_handling`), a handler error, damaged input; so partial
aggregates are always printed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Sequence

from ..errors import ScriptError
from ..sources import EventSource, StoppableSource, splits_whole
from ..stream.dispatch import Dispatcher, user_frame
from ..stream.run_context import set_current
from .api import ScriptHandlers, set_current_handlers

__all__ = ["ScriptRunner", "load_script"]


def load_script(path: str, argv: Sequence[str] = ()) -> tuple[ScriptHandlers, dict[str, Any]]:
    """Run the script file once to collect its handlers; returns (handlers, its globals)."""
    p = Path(path)
    try:
        source = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScriptError(f"{path}: cannot read script: {e.strerror or e}") from None
    try:
        code = compile(source, str(p), "exec")
    except SyntaxError as e:
        raise ScriptError(f"{path}:{e.lineno}: SyntaxError: {e.msg}") from None
    from .perf_compat import prepare_perf_environment

    prepare_perf_environment()
    handlers = ScriptHandlers()
    module = types.ModuleType("__main__")
    module.__file__ = str(p)
    namespace = module.__dict__
    namespace["__builtins__"] = __builtins__
    saved_argv, saved_main = sys.argv, sys.modules.get("__main__")
    previous = set_current_handlers(handlers)
    sys.argv = [str(p), *argv]
    sys.modules["__main__"] = module
    try:
        exec(code, namespace)
    except SystemExit as e:
        # perf scripts exit with their usage text on bad arguments
        msg = e.code if isinstance(e.code, str) else f"exit status {e.code}"
        raise ScriptError(f"{path}: script exited while loading: {str(msg).strip()}") from None
    except Exception as e:  # noqa: BLE001 - a user script may raise anything
        where = user_frame(e) or path
        raise ScriptError(f"{where}: {type(e).__name__}: {e}") from None
    finally:
        set_current_handlers(previous)
        sys.argv = saved_argv
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
    return handlers, namespace


class ScriptRunner:
    """One run of one script over one source."""

    def __init__(self, path: str, argv: Sequence[str] = (), *, on_error: str = "stop") -> None:
        self.path = path
        self.handlers, self.namespace = load_script(path, argv)
        self.on_error = on_error
        self.perf = None
        from .perf_compat import PerfScript, is_perf_script

        if is_perf_script(self.namespace):
            self.perf = PerfScript(self.namespace, self.handlers)
        self.dispatcher: Dispatcher | None = None

    def event_patterns(self) -> list[str]:
        """The events the script's handlers name (for enabling them in a live run)."""
        return self.handlers.event_patterns()

    def run(self, source: EventSource, recorder: Any = None) -> Dispatcher:
        """Feed every chunk of ``source`` to the handlers; end hooks always run.

        ``recorder``: a :class:`~tracewatch.recorder.FlightRecorder` that the
        script's ``dump()`` reaches during the run; it is closed (pending dumps
        written) after the end hooks, on every way out.
        """
        h = self.handlers
        if self.perf is not None:
            self.perf.bind(source.context)
        d = Dispatcher(h.events, h.timers, h.lost, on_error=self.on_error)
        self.dispatcher = d
        if isinstance(source, StoppableSource):  # live: a stop ends the handling promptly
            source.add_stop_listener(d.stop_handling)
        d.prepare(source.formats.values())
        previous_recorder = None
        if recorder is not None:
            previous_recorder = set_current("recorder", recorder)  # what dump() reaches
        started = False
        try:
            for f in h.start:
                d.call_hook(f)
            started = True
            if d.batch_only() and recorder is None and splits_whole(source):
                # only batch handlers, no timers: one batch per type for the whole file,
                # straight from the fused type index (no merged index, no chunking); a file
                # too big to index whole goes chunk by chunk instead
                d.feed_batches(source.split(only=d.wants))
            else:
                for chunk in source.chunks():
                    d.feed(chunk)
        finally:
            try:
                if started:
                    saved = sys.exc_info()[1]
                    for f in h.end:
                        try:
                            d.call_hook(f)
                        except Exception:  # noqa: BLE001
                            if saved is None:
                                raise
                sys.stdout.flush()
            finally:
                if recorder is not None:
                    try:
                        recorder.close()
                    finally:
                        set_current("recorder", previous_recorder)
        return d
