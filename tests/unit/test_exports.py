"""The package's public surface (as trio's test_exports): what ``import tracewatch`` offers is a
short, deliberate list, every name on it resolves, and nothing else is advertised."""

from __future__ import annotations

import tracewatch

#: the public API; a change here is a change of the API, made on purpose
PUBLIC = {
    "__version__",
    "on", "on_batch", "every", "at_start", "at_end", "on_lost", "probe", "on_probe",
    "Map", "count", "avg", "stats", "hist", "lhist",
    "Pairing", "SyscallPairing", "pair_arrays", "dump", "Window", "EventSequence", "Sequence", "Threshold",
    "open_trace", "FileSource", "Event", "EventBatch", "Filter",
    "TracewatchError", "TraceFormatError", "FilterError", "CaptureError", "ScriptError",
}


def test_the_public_names_are_the_deliberate_list():
    assert set(tracewatch.__all__) == PUBLIC
    assert len(tracewatch.__all__) == len(PUBLIC)  # no name twice


def test_every_public_name_resolves():
    for name in tracewatch.__all__:
        assert getattr(tracewatch, name) is not None, name


def test_dir_shows_the_public_names_only():
    assert dir(tracewatch) == sorted(tracewatch.__all__)


def test_errors_are_the_tree_in_errors_py():
    from tracewatch import errors

    for name in ("TracewatchError", "TraceFormatError", "FilterError", "CaptureError", "ScriptError"):
        assert getattr(tracewatch, name) is getattr(errors, name)
