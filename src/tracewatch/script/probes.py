"""Function probes asked for by a script (``probe()``, ``@on_probe``) or ``-P``: install and bind them.

A script names a probe's events before the probe exists: the uprobe group is
made per run (``tracewatch_<pid>_<n>``) and a recording has whichever group its
run had.  So ``probe()`` returns a name in the stand-in system ``probe``
(``probe:malloc``, ``probe:malloc__return``), and handlers can also write
``probe:...`` patterns themselves (``@on("probe:*")``).  Before the first event,
:func:`bind_probe_handlers` rewrites every ``probe:`` handler to the real
``group:event`` names:

* live, the probes are installed by :func:`probe_setup` (the ``setup`` of the
  :class:`~tracewatch.sources.session.LiveSession`), and each name becomes the
  events its own spec made (exact, even where a name had to be made unique);
* from a file (``-i``), a name matches the recording's probe events by event
  name (any group), as ``funccount -i`` does.

A ``probe:`` handler that matches no probe event is an error (one line), not
a handler that silently never runs.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

from ..errors import CaptureError
from ..sources.uprobes import DEFAULT_MAX_PROBES, RETURN_SUFFIX, ProbeSet, ProbeSpec, parse_probe_spec

__all__ = ["PROBE_SYSTEM", "ProbeRequest", "probe_event_name", "return_spec", "probe_setup",
           "bind_probe_handlers", "bind_file_probes", "probe_kind"]

#: the stand-in system of probe events in handler patterns
PROBE_SYSTEM = "probe"


@dataclass(frozen=True)
class ProbeRequest:
    """One probe a script or ``-P`` asked for, and the ``probe:`` name that stands for its events."""

    spec: ProbeSpec
    name: str  # probe:malloc, probe:malloc__return, probe:work_*

    @property
    def kind(self) -> str:
        return self.spec.kind


def probe_event_name(spec: ProbeSpec) -> str:
    """``probe:NAME`` for a spec: the event name its probe gets (globs kept for pattern specs)."""
    base = spec.function.split("@", 1)[0]
    base = re.sub(r"[^\w*?\[\]]", "_", base)
    if base and base[0].isdigit():
        base = "f_" + base
    if spec.offset:
        base = f"{base}_{spec.offset:x}"
    return f"{PROBE_SYSTEM}:{base}{RETURN_SUFFIX if spec.kind == 'r' else ''}"


def return_spec(spec: ProbeSpec) -> ProbeSpec:
    """The return probe of an entry spec (it fetches nothing: the entry's arguments mean nothing there)."""
    if spec.kind != "p" or spec.offset:
        raise CaptureError(f"probe {spec.text!r}: returns=True needs an entry probe at a function's start")
    return replace(spec, kind="r", args=())


def probe_kind(fmt: Any) -> str | None:
    """"p" for a uprobe/kprobe entry event format, "r" for a return one, None for other events."""
    names = {f.name for f in fmt.fields}
    if "__probe_func" in names and "__probe_ret_ip" in names:
        return "r"
    if "__probe_ip" in names:
        return "p"
    return None


def _is_probe_pattern(pattern: str) -> bool:
    return pattern.startswith(PROBE_SYSTEM + ":")


def _bind(handlers: Any, choose: Callable[[str, ProbeRequest | None], list[str]], nothing: Callable[[str], str]) -> None:
    """Replace each ``probe:`` handler by one per real event ``choose`` gives."""
    requests = {r.name: r for r in getattr(handlers, "probes", [])}
    bound = []
    for h in handlers.events:
        if not _is_probe_pattern(h.pattern):
            bound.append(h)
            continue
        events = choose(h.pattern, requests.get(h.pattern))
        if not events:
            raise CaptureError(f"{h.label}: {nothing(h.pattern)}")
        bound += [replace(h, pattern=e) for e in events]
    handlers.events[:] = bound
    if hasattr(handlers, "extra_events"):
        handlers.extra_events[:] = [p for p in handlers.extra_events if not _is_probe_pattern(p)]


def bind_probe_handlers(handlers: Any, probes: ProbeSet) -> None:
    """Live: rewrite ``probe:`` handler patterns to the installed events (``probes.install`` ran)."""
    group = probes.group

    def choose(pattern: str, req: ProbeRequest | None) -> list[str]:
        name = pattern.split(":", 1)[1]
        if req is not None:
            own = [p for p in probes.probes if p.spec.text == req.spec.text and p.kind == req.kind]
            if own:
                return [f"{group}:{p.event}" for p in own]
        return [f"{group}:{p.event}" for p in probes.probes if fnmatch.fnmatchcase(p.event, name)
                and (req is None or p.kind == req.kind)]

    def nothing(pattern: str) -> str:
        made = ", ".join(f"{PROBE_SYSTEM}:{p.event}" for p in probes.probes[:8]) or "none"
        fn = pattern.split(":", 1)[1].removesuffix(RETURN_SUFFIX)
        return (f"no probe makes the event {pattern} (this run's probes: {made}); "
                f"ask for it with probe('LIBRARY:{fn}') or -P 'LIBRARY:{fn}'")

    _bind(handlers, choose, nothing)


def bind_file_probes(handlers: Any, formats: Iterable[Any], where: str = "the recording") -> None:
    """From a file: rewrite ``probe:`` handler patterns to the file's probe events with those names."""
    found = [(fmt, kind) for fmt in formats if (kind := probe_kind(fmt)) is not None]

    def choose(pattern: str, req: ProbeRequest | None) -> list[str]:
        name = pattern.split(":", 1)[1]
        out = []
        for fmt, kind in found:
            if req is not None and kind != req.kind:
                continue
            plain = re.sub(r"_\d+(?=(__return)?$)", "", fmt.name)  # a name made unique: malloc_2
            if fnmatch.fnmatchcase(fmt.name, name) or fnmatch.fnmatchcase(plain, name):
                out.append(f"{fmt.system}:{fmt.name}")
        return out

    def nothing(pattern: str) -> str:
        have = sorted({f"{fmt.system}:{fmt.name}" for fmt, _ in found})
        shown = ", ".join(have[:8]) + (", ..." if len(have) > 8 else "")
        return f"{where} has no probe event for {pattern} (" + (
            f"its probe events: {shown})" if have else "it has no probe events at all)")

    if any(_is_probe_pattern(h.pattern) for h in handlers.events):
        _bind(handlers, choose, nothing)


def probe_setup(specs: Sequence[ProbeSpec | str], handlers: Any = None, *, pid: int | None = None,
                command: Sequence[str] | None = None, max_probes: int = DEFAULT_MAX_PROBES,
                then: Callable[[Any], list[str]] | None = None) -> Callable[[Any], list[str]]:
    """A LiveSession ``setup``: resolve ``specs`` plus the script's probes, install them, bind handlers.

    ``pid`` resolves libraries through ``/proc/PID/maps`` (and is the default
    program); ``command``'s program is the default program otherwise.
    ``then``: another setup to run after (its events are added).
    """
    wanted: list[ProbeSpec] = []
    seen: set[tuple[str, str]] = set()
    for s in [*specs, *(r.spec for r in getattr(handlers, "probes", []) if handlers is not None)]:
        spec = parse_probe_spec(s) if isinstance(s, str) else s
        if (spec.text, spec.kind) not in seen:
            seen.add((spec.text, spec.kind))
            wanted.append(spec)
    program = None
    if command:
        program = shutil.which(command[0]) or command[0]
        if not os.path.exists(program):
            raise CaptureError(f"cannot run {command[0]!r}: no such program")
    if pid is not None and not os.path.exists(f"/proc/{pid}"):
        raise CaptureError(f"no process {pid}")
    # resolve now, before the instance exists: a bad symbol fails without touching tracefs
    probes = ProbeSet.from_specs(wanted, pid=pid, program=program, max_probes=max_probes) if wanted else ProbeSet([])

    def setup(instance: Any) -> list[str]:
        events: list[str] = []
        if probes.probes:
            events += probes.install(instance)
        if handlers is not None:
            bind_probe_handlers(handlers, probes)
        if then is not None:
            events += list(then(instance) or [])
        return events

    setup.probes = probes  # type: ignore[attr-defined]
    return setup
