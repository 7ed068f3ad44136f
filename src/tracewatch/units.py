"""Durations and sizes as users write them (``500ms``, ``2s``, ``64M``), in one place below
every layer that takes them: script timers, the recorder's windows and rings, the tools' options."""

from __future__ import annotations

import re

__all__ = ["parse_duration", "parse_size"]

_DURATION_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
                   "min": 60_000_000_000, "h": 3_600_000_000_000}

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
               "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


def parse_duration(value: str | int | float) -> int:
    """``"500ms"``, ``"2s"``, ``"1m"`` or a number of seconds -> nanoseconds."""
    if isinstance(value, (int, float)):
        return int(value * 1_000_000_000)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(value))
    if not m or m.group(2) not in _DURATION_UNITS and m.group(2) != "":
        raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 2s, 1m)")
    return int(float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"])


def parse_size(value: str | int) -> int:
    """``"64M"``, ``"512K"``, ``"1G"`` or a number of bytes -> bytes (binary units, as ``--keep`` takes them)."""
    if isinstance(value, int):
        return value
    text = str(value).strip().upper()
    num = text.rstrip("KMGIB")
    unit = text[len(num):]
    try:
        n = float(num)
    except ValueError:
        n = -1.0
    if unit not in _SIZE_UNITS or n < 0:
        raise ValueError(f"not a size: {value!r} (use e.g. 64M, 512K, 1G)")
    return int(n * _SIZE_UNITS[unit])
