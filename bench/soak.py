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
signal's arrival to the rename of the .dat, as the sidecars record it; the
fsync after the rename is not in it), with its steps (``timing_ms``).

Stopping: the load is killed first, then the recorder gets SIGTERM and
``--stop-timeout`` seconds to stop (it is then killed and its tracefs
instance removed).  SIGTERM or SIGHUP to the soak itself (a ``timeout``, a
closed terminal) stops it the same way and still prints the summary; output
is line-buffered, so a log file has every line even if the soak is killed.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _trace import start_getppid_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]



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


def _remove_instance(pid: int) -> None:
    """After a SIGKILL: remove the killed recorder's tracefs instance (what its next start would do)."""
    sys.path.insert(0, str(ROOT / "src"))
    from tracewatch.sources.tracefs import TraceFS

    try:
        removed = TraceFS().cleanup_stale()
        print(f"soak: removed {', '.join(removed) or 'nothing'} left by pid {pid}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001
        print(f"soak: could not clean up after pid {pid}: {e}", file=sys.stderr)


def _stop_on_signal(signum, frame):  # noqa: ANN001, ARG001
    # SIGTERM/SIGHUP to the soak (a timeout, a closed terminal): end like Ctrl-C, so the
    # recorder and the load are stopped and the summary of what ran is printed
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=1.0, help="how long to run (default 1)")
    p.add_argument("--keep", default="64M", help="ring size (default 64M)")
    p.add_argument("--rate", type=float, default=300_000, help="target load in events/s (default 300000)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--dump-every", type=float, default=15.0, help="seconds between triggers of each kind")
    p.add_argument("--out", help="dump directory (default: a temporary one, removed at the end)")
    p.add_argument("--stop-timeout", type=float, default=60.0,
                   help="seconds the recorder may take to stop after SIGTERM before it is killed (default 60)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("soak: needs root (tracefs instances)", file=sys.stderr)
        return 2

    sys.stdout.reconfigure(line_buffering=True)  # to a file too: every line is there even if the soak is killed
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    tmp = tempfile.TemporaryDirectory(prefix="tracewatch-soak-")
    out = Path(args.out or tmp.name) / "dumps"
    status_path = Path(tmp.name) / "status.json"
    script = Path(tmp.name) / "periodic.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    load = start_getppid_load(args.rate)
    log = open(Path(tmp.name) / "flight.log", "w+")
    cmd = [sys.executable, "-m", "tracewatch", "flight", str(script), "-a", f"{args.dump_every:g}s",
           "-e", "syscalls:sys_enter_getppid", "-e", "syscalls:sys_exit_getppid", "-e", "sched:*", "--keep", args.keep, "--out", str(out),
           "--status-file", str(status_path), "--status-interval", "1", "--max-dumps", "4", "--min-free", "0"]
    fl = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    print(f"soak: {args.minutes:g} min, ring {args.keep}, load ~{args.rate:,.0f} events/s, "
          f"recorder pid {fl.pid}")
    print(f"{'t(s)':>6} {'RSS MiB':>8} {'ring MiB':>8} {'span s':>7} {'events/s':>10} {'lost':>10} {'dumps':>5}")
    samples: list[tuple[float, float, float]] = []  # (t, rss MiB, ring fill)
    lost_at_fill: int | None = None  # lost events when the ring first filled (start-up: numba, first reads)
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_usr1 = t0 + args.dump_every / 2
    sidecars: dict[str, dict] = {}
    stopped_s = None
    try:
        next_sample = t0 + args.interval
        while time.monotonic() < end:
            if fl.poll() is not None:
                log.seek(0)
                tail = log.read().splitlines()[-20:]
                raise RuntimeError(f"the recorder exited ({fl.returncode}):\n" + "\n".join(tail))
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
                if fill >= 0.99 and lost_at_fill is None:
                    lost_at_fill = st.get("lost") or 0
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
    except KeyboardInterrupt as e:
        print(f"soak: interrupted ({e or 'SIGINT'}) after {time.monotonic() - t0:.0f} s: stopping", flush=True)
    finally:
        t_stop = time.monotonic()
        load.kill()  # first: the recorder's drain and last dumps need no more load
        load.wait()
        if fl.poll() is None:
            fl.send_signal(signal.SIGTERM)
        try:
            fl.wait(args.stop_timeout)
            stopped_s = time.monotonic() - t_stop
        except subprocess.TimeoutExpired:
            print(f"soak: the recorder did not stop within {args.stop_timeout:g} s of SIGTERM: killed",
                  file=sys.stderr, flush=True)
            fl.kill()
            fl.wait()
            _remove_instance(fl.pid)
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
        series = []
        step = 60.0 if samples[-1][0] > 300 else args.interval * 2
        next_t = 0.0
        for t, rss, fill in samples:
            if fill >= 0.99 and t >= next_t:
                series.append(f"{t:.0f}s {rss:.0f}")
                next_t = t + step
        print(f"RSS series (MiB, every {step:g} s after the fill): " + ", ".join(series))
    else:
        print("the ring never filled: run longer or with more load")
    print(f"events: {st['events_total']:,} in {total_s:.0f} s = {st['events_total'] / total_s:,.0f}/s recorded; "
          f"lost {st.get('lost') or 0:,} ({(st.get('lost') or 0) - (lost_at_fill or 0):,} after the ring filled); "
          f"dispatched {st['events_dispatched']:,}; handler lag at the end "
          f"{st['handlers']['lag_ms']} ms, late triggers {st['handlers']['late_triggers']}")
    print(f"recorder stopped {stopped_s:.1f} s after SIGTERM" if stopped_s is not None else
          "recorder killed (did not stop)")
    for kind in ("SIGUSR1", "timer"):
        ds = [s for s in sidecars.values() if s.get("reason") == kind]
        if not ds:
            continue
        t2f = [s["trigger_to_file_ms"] for s in ds]
        w = [s["write_ms"] for s in ds]
        mb = statistics.mean(s["bytes"] for s in ds) / 2**20
        srt = sorted(t2f)
        p90, p99 = (srt[min(len(srt) - 1, int(q * len(srt)))] for q in (0.90, 0.99))
        print(f"{kind:>8} dumps: {len(ds)}, {mb:.1f} MiB each; trigger-to-file ms: median "
              f"{statistics.median(t2f):.0f}, p90 {p90:.0f}, p99 {p99:.0f}, max {max(t2f):.0f}, "
              f"{sum(1 for v in t2f if v >= 200)} at or over 200 (target < 200); of which writing the file "
              f"(metadata, pages, rename, fsync): median {statistics.median(w):.0f}")
        steps = {}
        for s in ds:
            for k, v in s.get("timing_ms", {}).items():
                steps.setdefault(k, []).append(v)
        if steps:
            print(" " * 10 + "steps, median ms: " + ", ".join(
                f"{k} {statistics.median(v):.1f}" for k, v in steps.items())
                + "  (trigger-to-file ends at rename; fsync follows)")
    print(f"dumps written {st['dumps']['dumps']}, failed {st['dumps']['failed']}, busy {st['dumps']['busy']}")
    log.seek(0)
    errors = [ln for ln in log.read().splitlines() if "failed" in ln or "error" in ln.lower()]
    for ln in errors[:5]:
        print("log:", ln)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
