"""Run ``perf script -s`` Python scripts unmodified (being written)."""

from __future__ import annotations

from typing import Any


def prepare_perf_environment() -> None:
    """Make perf's helper modules importable before a script loads."""


def is_perf_script(namespace: dict[str, Any]) -> bool:
    return False


class PerfScript:
    def __init__(self, namespace: dict[str, Any], handlers: Any) -> None:
        raise NotImplementedError

    def bind(self, context: Any) -> None:
        raise NotImplementedError
