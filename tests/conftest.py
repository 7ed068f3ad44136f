"""Shared test fixtures: where the real trace.dat fixtures are, and a tracefs guard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: trace.dat files made by trace-cmd, with trace-cmd's own report outputs beside them
FIXTURES = Path(os.environ.get("TRACEWATCH_FIXTURES", REPO.parent / "shared" / "fixtures"))


def fixture_path(name: str) -> Path:
    p = FIXTURES / name
    if not p.exists():
        pytest.skip(f"fixture {p} is missing (set TRACEWATCH_FIXTURES to the shared fixtures folder)")
    return p


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"fixtures folder {FIXTURES} is missing")
    return FIXTURES


def raw_pages_meta():
    """The metadata of the raw-pages fixture (formats, kallsyms, cmdlines) as a tracefs gives it,
    for writing trace.dat files of synthetic or raw pages."""
    from tracewatch.formats.tracedat_writer import TraceMeta

    raw = fixture_path("raw-pages")  # skips the test when the fixtures are not there
    ev = raw / "events"
    return TraceMeta(
        header_page=(ev / "header_page").read_text(),
        header_event=(ev / "header_event").read_text(),
        ftrace_formats=[p.read_text() for p in sorted(ev.glob("ftrace/*/format"))],
        event_formats={s: [p.read_text() for p in sorted((ev / s).glob("*/format"))]
                       for s in ("raw_syscalls", "sched")},
        kallsyms=(raw / "kallsyms.subset").read_text(),
        cmdlines=(raw / "saved_cmdlines").read_text(),
        trace_clock=(raw / "trace_clock.txt").read_text(),
    )
