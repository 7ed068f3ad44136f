"""Processes as /proc and kill(2) tell them: whether a pid runs, and when a process started.

Stale kernel state (instances, uprobe groups), dump directories and status files name the
process that made them; these two answers decide whether that process still runs."""

from __future__ import annotations

import os

__all__ = ["pid_alive", "process_start_time"]


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours or anyone's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of ``/proc/PID/stat``);
    None when there is no such process.  With the pid, it tells a process from a later one
    that got the same pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces and ')': fields 3..
    # follow the last ')'
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[22 - 3])
    except (IndexError, ValueError):
        return None
