"""Memory and time of runs over a big trace.dat: merged whole vs a window of pages at a time.

    python bench/file_memory.py [--iterations N]

Records (once, cached in /tmp) a raw_syscalls + sched trace of N dd iterations (2.5M gives
~10M events, ~800 MB), then runs, each as its own process:
  tracewatch run, a per-event script     (file merged in windows, the default for big files)
  the same script run merged whole        (FileSource(whole_bytes=...): the path small files take)
  tracewatch run, a batch script         (windows)
  tracewatch report                      (windows), and trace-cmd report for comparison
and prints wall time and peak memory: anonymous memory (the process's own: index arrays,
Python objects) apart from the file's mapped pages (page cache the kernel can take back),
sampled every 20 ms from /proc/PID/status.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _trace import REPO, bench_trace  # noqa: E402

PER_EVENT = '''
from tracewatch import on, at_end
counts = {}
@on("raw_syscalls:sys_enter")
def enter(ev):
    k = (ev.common_pid, ev.id)
    counts[k] = counts.get(k, 0) + 1
@at_end
def end():
    print("sys_enter", sum(counts.values()))
'''

BATCH = '''
from tracewatch import on_batch, at_end, Map
counts = Map(int)
@on_batch("raw_syscalls:sys_enter")
def enter(b):
    counts.add_counts((b.common_pid, b.id))
@at_end
def end():
    print("sys_enter", sum(v for _, v in counts.items()))
'''


# the per-event script over the file merged whole, however big (what files up to 256 MB get)
WHOLE = """
import sys
from tracewatch.script.runner import ScriptRunner
from tracewatch.sources.file import FileSource
with FileSource(sys.argv[2], whole_bytes=1 << 50) as src:
    ScriptRunner(sys.argv[1]).run(src)
"""


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """Wall seconds, peak RssAnon and peak RssFile (MB), and the last line of stdout."""
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
        anon = file = 0
        while p.poll() is None:
            st = _status_kb(p.pid)
            anon, file = max(anon, st.get("RssAnon", 0)), max(file, st.get("RssFile", 0))
            time.sleep(0.02)
        wall = time.perf_counter() - t
        if p.returncode:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
        out.seek(0, os.SEEK_END)
        size = out.tell()
        out.seek(max(0, size - 4096))
        tail = out.read().decode(errors="replace").strip().splitlines()
    return wall, anon // 1024, file // 1024, tail[-1][:60] if tail else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2_500_000,
                    help="dd iterations of the workload (4 events each; 2.5M gives ~10M events, ~800 MB)")
    args = ap.parse_args()
    trace = bench_trace(args.iterations)
    size_mb = os.path.getsize(trace) / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="tracewatch-bench-"))
    (tmp / "per_event.py").write_text(PER_EVENT)
    (tmp / "batch.py").write_text(BATCH)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    tw = [sys.executable, "-m", "tracewatch"]
    whole = [sys.executable, "-c", WHOLE, str(tmp / "per_event.py"), trace]
    runs = [
        ("run, per-event script (windows)", tw + ["run", str(tmp / "per_event.py"), "-i", trace], env),
        ("run, per-event script (merged whole)", whole, env),
        ("run, batch script (windows)", tw + ["run", str(tmp / "batch.py"), "-i", trace], env),
        ("report (windows)", tw + ["report", trace], env),
    ]
    if shutil.which("trace-cmd"):
        runs.append(("trace-cmd report", ["trace-cmd", "report", trace], env))
    measure(runs[0][1], env)  # warm caches
    print(f"trace.dat: {trace} ({size_mb:.0f} MB)")
    print(f"{'':<40} {'wall':>7} {'anon MB':>8} {'file MB':>8}")
    for label, cmd, e in runs:
        wall, anon, file, last = measure(cmd, e)
        print(f"{label:<40} {wall:6.2f}s {anon:>8} {file:>8}   {last if label.startswith('run') else ''}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(REPO)
    main()
