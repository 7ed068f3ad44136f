"""Live comm names: /proc names a live pid even when the kernel's saved_cmdlines still holds the
name of an earlier process with the same pid (pids are reused; pid_max is often 32768)."""

from __future__ import annotations

import os
import subprocess
import sys

from tracewatch.formats.symbols import TraceSymbols
from tracewatch.sources.session import LiveContext


def _own_comm() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()


def test_a_live_pid_is_named_by_proc_not_by_a_stale_saved_cmdline():
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = int(gone.stdout)
    me = os.getpid()
    reads = []

    def saved() -> str:
        reads.append(1)
        return f"{me} ldconfig\n{dead} old-name\n"

    ctx = LiveContext({}, TraceSymbols(), saved, refresh_interval=0.0)
    assert ctx.comm(dead) == "old-name"  # exited: the saved table is the fallback (read now)...
    assert ctx.comm(me) == _own_comm()  # ... but a live pid is named by /proc, not "ldconfig"
    assert ctx.comm(0) == "<idle>"
    assert ctx.comm(4_000_000) == "<...>"  # nobody knows it
    assert len(reads) >= 1
