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
