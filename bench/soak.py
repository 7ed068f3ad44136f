"""Soak test of the flight recorder: memory, throughput, losses and dump latency under load.

Runs ``tracewatch flight`` (a separate process, as in production) recording
``raw_syscalls:*`` and ``sched:*`` into a ``--keep`` ring while a load
generator makes about ``--rate`` events per second (paced ``getppid`` calls:
two events each).  Every ``--interval`` seconds it prints the recorder's RSS
(``/proc/PID/status``), events/s and lost events (from its status file).
Triggers: SIGUSR1 every ``--dump-every`` seconds, and the script's own
``dump()`` from a timer handler (``@every``) at the same period, offset by
half of it.  At the end: the RSS series summary (flat after the ring fills?)
and the trigger-to-file delay of every dump (from the trigger call or the
signal's arrival to the rename of the .dat, as the sidecars record it).

Needs root and tracefs.  Examples::

    sudo .venv/bin/python bench/soak.py                      # 1 minute, 64M ring, ~300k events/s
    sudo .venv/bin/python bench/soak.py --minutes 30         # the figure for the closing note
    sudo .venv/bin/python bench/soak.py --minutes 2 --keep 256M --rate 500000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOAD = """
import os, sys, time
rate = float(sys.argv[1]) / 2          # two events (sys_enter, sys_exit) per call
tick = 0.005
per_tick = max(1, int(rate * tick))
getppid = os.getppid
nxt = time.monotonic()
while True:
    for _ in range(per_tick):
        getppid()
    nxt += tick
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
    elif d < -1:
        nxt = time.monotonic()         # far behind (machine busy): don't burst to catch up
"""

SCRIPT = """
import sys
from tracewatch import every, dump

PERIOD = sys.argv[1]

@every(PERIOD)
def periodic():
    # a trigger from a handler: the dump ends at the timer's trace time (post window 0)
    dump(reason="timer", after=0)
"""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=1.0, help="how long to run (default 1)")
    p.add_argument("--keep", default="64M", help="ring size (default 64M)")
    p.add_argument("--rate", type=float, default=300_000, help="target load in events/s (default 300000)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--dump-every", type=float, default=15.0, help="seconds between triggers of each kind")
    p.add_argument("--out", help="dump directory (default: a temporary one, removed at the end)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("soak: needs root (tracefs instances)", file=sys.stderr)
        return 2

    tmp = tempfile.TemporaryDirectory(prefix="tracewatch-soak-")
    out = Path(args.out or tmp.name) / "dumps"
    status_path = Path(tmp.name) / "status.json"
    script = Path(tmp.name) / "periodic.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    load = subprocess.Popen([sys.executable, "-c", textwrap.dedent(LOAD), str(args.rate)])
    log = open(Path(tmp.name) / "flight.log", "w+")
    cmd = [sys.executable, "-m", "tracewatch", "flight", str(script), "-a", f"{args.dump_every:g}s",
           "-e", "syscalls:sys_enter_getppid", "-e", "syscalls:sys_exit_getppid", "-e", "sched:*", "--keep", args.keep, "--out", str(out),
           "--status-file", str(status_path), "--status-interval", "1", "--max-dumps", "4", "--min-free", "0"]
    fl = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    print(f"soak: {args.minutes:g} min, ring {args.keep}, load ~{args.rate:,.0f} events/s, "
          f"recorder pid {fl.pid}")
    print(f"{'t(s)':>6} {'RSS MiB':>8} {'ring MiB':>8} {'span s':>7} {'events/s':>10} {'lost':>10} {'dumps':>5}")
    samples: list[tuple[float, float, float]] = []  # (t, rss MiB, ring fill)
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_usr1 = t0 + args.dump_every / 2
    sidecars: dict[str, dict] = {}
    try:
        next_sample = t0 + args.interval
        while time.monotonic() < end:
            if fl.poll() is not None:
                raise RuntimeError(f"the recorder exited ({fl.returncode})")
            now = time.monotonic()
            if now >= next_usr1:
                fl.send_signal(signal.SIGUSR1)
                next_usr1 += args.dump_every
            if now >= next_sample:
                next_sample += args.interval
                try:
                    st = json.loads(status_path.read_text())
                except (OSError, ValueError):
                    st = {}
                rss = rss_kb(fl.pid) / 1024
                ring = st.get("ring", {})
                fill = ring.get("bytes", 0) / max(ring.get("keep_bytes", 1), 1)
                samples.append((now - t0, rss, fill))
                print(f"{now - t0:6.0f} {rss:8.1f} {ring.get('bytes', 0) / 2**20:8.1f} {ring.get('span_s', 0):7.2f} "
                      f"{st.get('events_per_s', 0):10,.0f} {st.get('lost') or 0:10,} "
                      f"{st.get('dumps', {}).get('dumps', 0):5}", flush=True)
            for side in out.glob("*.json") if out.exists() else ():
                if side.name not in sidecars:
                    try:
                        sidecars[side.name] = json.loads(side.read_text())
                    except (OSError, ValueError):
                        pass
            time.sleep(0.1)
    finally:
        if fl.poll() is None:
            fl.send_signal(signal.SIGTERM)
        fl.wait(60)
        load.kill()
        load.wait()
    for side in out.glob("*.json") if out.exists() else ():
        if side.name not in sidecars:
            sidecars[side.name] = json.loads(side.read_text())
    st = json.loads(status_path.read_text())
    total_s = time.monotonic() - t0

    print()
    full = [rss for _t, rss, fill in samples if fill >= 0.99]
    if full:
        base = full[0]
        dev = max(abs(r - base) for r in full) / base * 100
        print(f"RSS after the ring filled: first {base:.1f} MiB, min {min(full):.1f}, max {max(full):.1f} "
              f"({len(full)} samples): max deviation {dev:.1f}% (target: within 10%)")
    else:
        print("the ring never filled: run longer or with more load")
    print(f"events: {st['events_total']:,} in {total_s:.0f} s = {st['events_total'] / total_s:,.0f}/s recorded; "
          f"lost {st.get('lost') or 0:,}; dispatched {st['events_dispatched']:,}; handler lag at the end "
          f"{st['handlers']['lag_ms']} ms, late triggers {st['handlers']['late_triggers']}")
    for kind in ("SIGUSR1", "timer"):
        ds = [s for s in sidecars.values() if s.get("reason") == kind]
        if not ds:
            continue
        t2f = [s["trigger_to_file_ms"] for s in ds]
        w = [s["write_ms"] for s in ds]
        mb = statistics.mean(s["bytes"] for s in ds) / 2**20
        print(f"{kind:>8} dumps: {len(ds)}, {mb:.1f} MiB each; trigger-to-file ms: median "
              f"{statistics.median(t2f):.0f}, max {max(t2f):.0f} (target < 200); of which writing the file "
              f"(metadata, copy, fsync, rename): median {statistics.median(w):.0f}")
    print(f"dumps written {st['dumps']['dumps']}, failed {st['dumps']['failed']}, busy {st['dumps']['busy']}")
    log.seek(0)
    errors = [ln for ln in log.read().splitlines() if "failed" in ln or "error" in ln.lower()]
    for ln in errors[:5]:
        print("log:", ln)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
