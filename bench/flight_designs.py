"""The two flight-recorder designs of issue 5, measured under the same load.

A. ``tracewatch flight`` (what is built): the live reader reads every page, the
   handlers run, and a userspace ring keeps the newest ``--keep`` bytes of
   pages; a trigger writes them out.  Measured with a ``--trigger`` that never
   fires and SIGUSR1 as the trigger.
B. A second private tracefs instance in overwrite mode (``options/overwrite``
   1, the default) with a ``--keep`` per-CPU buffer and no reader: the kernel
   keeps the history.  At a trigger: ``tracing_on`` 0, every CPU's
   ``trace_pipe_raw`` drained with ``readv`` until EAGAIN, the pages written
   with :class:`TraceDatWriter` (fsync, rename), ``tracing_on`` 1 again.  The
   drain empties the kernel buffer: the next dump only has what came after.

Same load for both: a process pinned to CPU 0 calling ``getppid`` paced at
``--rate`` events/s (two events a call), with ``syscalls:sys_{enter,exit}_getppid``
and ``sched:*`` enabled.  For each design it prints: the CPU time per second
of the tracer process while waiting (utime+stime from ``/proc/PID/stat``,
after a warm-up), the load process's CPU per second (the kernel's event
writing is charged to it), the delay from the trigger to a complete
trace.dat under its final name (fsync included, as ``write_ms``), bytes and
events in each dump, and how far the newest event in the dump is from the
trace clock at the trigger (``now_ts`` of the instance's ``per_cpu/cpu0/stats``
read just before the trigger): a small gap means the newest events are there.

Needs root and tracefs.  ``sudo .venv/bin/python bench/flight_designs.py [--seconds 15] [--keep 64M]``
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _trace import start_getppid_load  # noqa: E402

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tracewatch.formats.ring_page import walk_pages  # noqa: E402
from tracewatch.formats.tracedat import TraceDatReader  # noqa: E402
from tracewatch.formats.tracedat_writer import TraceDatWriter, TraceMeta  # noqa: E402
from tracewatch.sources.tracefs import Instance, TraceFS  # noqa: E402

EVENTS = ["syscalls:sys_enter_getppid", "syscalls:sys_exit_getppid", "sched:*"]



TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().rstrip("B").rstrip("I")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def now_ts_ns(inst_path: str, cpu: int = 0) -> int:
    """The instance's trace clock now, from per_cpu/cpuN/stats (ns)."""
    for line in Path(inst_path, f"per_cpu/cpu{cpu}/stats").read_text().splitlines():
        if line.startswith("now ts:"):
            return int(round(float(line.split(":", 1)[1]) * 1e9))
    raise RuntimeError("no now ts")


def dump_contents(path: str) -> tuple[int, int, int]:
    """(bytes of pages, events, newest event ts) of a trace.dat."""
    r = TraceDatReader(path)
    nbytes = events = 0
    newest = 0
    for c in range(r.cpus):
        pages = r.cpu_buffer(c)[0]
        if len(pages) == 0:
            continue
        nbytes += len(pages)
        idx = walk_pages(pages, r.page_size, commit_size=r.header_page.commit_size, little=r.little_endian)
        events += len(idx)
        if len(idx):
            newest = max(newest, int(idx.ts.max()))
    return nbytes, events, newest


def start_load(rate: float) -> subprocess.Popen:
    return start_getppid_load(rate, "0")


def measure_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    c0 = {k: cpu_s(p) for k, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return {k: (cpu_s(p) - c0[k]) / dt for k, p in pids.items()}


def kernel_events(inst_path: str) -> int:
    """Events the instance's buffers took so far (entries + overrun + read, all CPUs)."""
    total = 0
    for st in Path(inst_path, "per_cpu").glob("cpu*/stats"):
        d = {}
        for line in st.read_text().splitlines():
            k, _, v = line.partition(":")
            d[k.strip()] = v.strip()
        total += int(d.get("entries", 0)) + int(d.get("overrun", 0)) + int(d.get("read events", 0))
    return total


# -- design A ---------------------------------------------------------------------

def design_a(args, keep: int, tmp: Path) -> dict:
    out = tmp / "a-dumps"
    status = tmp / "a-status.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "tracewatch", "flight", "--trigger", "syscalls:sys_exit_getppid: ret == -12345"]
    for e in EVENTS:
        cmd += ["-e", e]
    cmd += ["--keep", args.keep, "--out", str(out), "--status-file", str(status), "--status-interval", "1",
            "--min-free", "0", "--max-dumps", "10"]
    log = open(tmp / "a-flight.log", "w+")
    load = start_load(args.rate)
    fl = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    res: dict = {"dumps": []}
    try:
        # ready when the status shows events; then let the ring fill
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if fl.poll() is not None:
                log.seek(0)
                raise RuntimeError("flight exited:\n" + log.read()[-2000:])
            try:
                st = json.loads(status.read_text())
                if st.get("events_total", 0) > 0:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        inst = next(p for p in Path(TraceFS().path, "instances").glob(f"tracewatch-{fl.pid}-*"))
        time.sleep(args.warmup)
        ev0, t0 = kernel_events(str(inst)), time.monotonic()
        cpu = measure_cpu({"tracer": fl.pid, "load": load.pid}, args.seconds)
        res["events_per_s"] = (kernel_events(str(inst)) - ev0) / (time.monotonic() - t0)
        res["cpu"] = cpu
        st = json.loads(status.read_text())
        res["ring"] = st.get("ring", {})
        res["lost"] = st.get("lost")
        for i in range(args.dumps):
            before = set(out.glob("*.dat")) if out.exists() else set()
            ts_at = now_ts_ns(str(inst))
            t = time.monotonic()
            fl.send_signal(signal.SIGUSR1)
            new = None
            while time.monotonic() - t < 30:
                sides = [p for p in out.glob("*.json")] if out.exists() else []
                done = [p for p in sides if p.with_suffix(".dat") not in before]
                if done:
                    new = done[0]
                    break
                time.sleep(0.002)
            seen_ms = (time.monotonic() - t) * 1e3
            side = json.loads(new.read_text())
            nbytes, events, newest = dump_contents(str(new.with_suffix(".dat")))
            res["dumps"].append({"trigger_to_file_ms": side["trigger_to_file_ms"], "write_ms": side["write_ms"],
                                 "fsync_ms": side.get("timing_ms", {}).get("fsync"),
                                 "seen_ms": seen_ms, "bytes": nbytes, "events": events,
                                 "newest_gap_ms": (ts_at - newest) / 1e6})
            time.sleep(2.0)
    finally:
        load.kill()
        load.wait()
        if fl.poll() is None:
            fl.send_signal(signal.SIGTERM)
        try:
            fl.wait(30)
        except subprocess.TimeoutExpired:
            fl.kill()
            fl.wait()
            TraceFS().cleanup_stale()
    return res


# -- design B ---------------------------------------------------------------------

def drain_and_write(inst: Instance, meta_events: list[tuple[str, str]], path: Path, batch_pages: int = 256) -> dict:
    """Trigger for design B: stop the instance, drain every CPU, write a trace.dat, restart."""
    marks = {}
    t0 = time.monotonic()
    inst.tracing_on = False
    marks["stop"] = time.monotonic()
    meta = TraceMeta.from_tracefs(inst.path, meta_events, kallsyms_path=None)
    ps = meta.page_size
    marks["metadata"] = time.monotonic()
    cpus = max(inst.cpus) + 1
    w = TraceDatWriter(path, meta, cpus)
    buf = np.empty(batch_pages * ps, dtype=np.uint8)
    view = memoryview(buf)
    iov = [view[i * ps:(i + 1) * ps] for i in range(batch_pages)]
    drained = 0
    for cpu in inst.cpus:
        fd = os.open(os.path.join(inst.path, f"per_cpu/cpu{cpu}/trace_pipe_raw"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    n = os.readv(fd, iov)
                except BlockingIOError:
                    break
                if n <= 0:
                    break
                n -= n % ps
                w.add_pages(cpu, view[:n])
                drained += n
                if n < len(buf):
                    break
        finally:
            os.close(fd)
    marks["drain"] = time.monotonic()
    w.close()  # fsync, rename
    marks["write"] = time.monotonic()
    inst.tracing_on = True
    del iov
    view.release()
    return {"trigger_to_file_ms": (marks["write"] - t0) * 1e3,
            "steps_ms": {"stop": (marks["stop"] - t0) * 1e3, "metadata": (marks["metadata"] - marks["stop"]) * 1e3,
                         "drain": (marks["drain"] - marks["metadata"]) * 1e3,
                         "write+fsync+rename": (marks["write"] - marks["drain"]) * 1e3},
            "drained": drained}


def design_b(args, keep: int, tmp: Path) -> dict:
    out = tmp / "b-dumps"
    out.mkdir()
    res: dict = {"dumps": []}
    load = start_load(args.rate)
    try:
        with Instance() as inst:
            res["overwrite_default"] = inst.option("overwrite")
            inst.set_option("overwrite", True)
            inst.buffer_size_kb = keep // 1024
            names = inst.enable(EVENTS)
            meta_events = [tuple(n.split(":", 1)) for n in names]
            inst.tracing_on = True
            time.sleep(args.warmup)
            ev0, t0 = kernel_events(inst.path), time.monotonic()
            res["cpu"] = measure_cpu({"tracer": os.getpid(), "load": load.pid}, args.seconds)
            res["events_per_s"] = (kernel_events(inst.path) - ev0) / (time.monotonic() - t0)
            res["buffer_size_kb"] = inst.buffer_size_kb
            for i in range(args.dumps):
                if i:
                    time.sleep(args.refill)  # the drain emptied the buffer: let it fill again
                ts_at = now_ts_ns(inst.path)
                path = out / f"b-{i}.dat"
                d = drain_and_write(inst, meta_events, path)
                nbytes, events, newest = dump_contents(str(path))
                d.update(bytes=nbytes, events=events, newest_gap_ms=(ts_at - newest) / 1e6)
                res["dumps"].append(d)
    finally:
        load.kill()
        load.wait()
    return res


def summarize(name: str, r: dict) -> None:
    print(f"\n{name}")
    print(f"  load: {r['events_per_s']:,.0f} events/s recorded by the kernel; load process CPU "
          f"{r['cpu']['load'] * 100:.1f}% (syscalls + the kernel writing events)")
    print(f"  tracer CPU while waiting: {r['cpu']['tracer'] * 1000:.0f} ms per s of tracing"
          + (f"; events lost {r['lost'] or 0:,}" if "lost" in r else ""))
    for i, d in enumerate(r["dumps"]):
        extra = (f"write_ms {d['write_ms']:.0f} (fsync {d['fsync_ms']}); signal to sidecar on disk "
                 f"(rename, fsync, .json) {d['seen_ms']:.0f} ms"
                 if "write_ms" in d else
                 "steps ms " + ", ".join(f"{k} {v:.1f}" for k, v in d["steps_ms"].items()))
        print(f"  dump {i + 1}: trigger-to-file {d['trigger_to_file_ms']:.0f} ms; {d['bytes'] / 2**20:.1f} MiB, "
              f"{d['events']:,} events; newest event {d['newest_gap_ms']:.1f} ms before the trigger; {extra}")
    t2f = [d["trigger_to_file_ms"] for d in r["dumps"]]
    print(f"  trigger-to-file median {statistics.median(t2f):.0f} ms over {len(t2f)} dumps"
          + (" (to the rename; fsync after it)" if "write_ms" in r["dumps"][0] else " (fsync and rename included)"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=15.0, help="CPU measurement window per design (default 15)")
    p.add_argument("--warmup", type=float, default=12.0,
                   help="seconds before measuring: start-up and the history filling (default 12)")
    p.add_argument("--keep", default="64M", help="history: flight --keep; design B's per-CPU buffer (default 64M)")
    p.add_argument("--rate", type=float, default=300_000, help="load in events/s (default 300000)")
    p.add_argument("--dumps", type=int, default=3, help="triggers per design (default 3)")
    p.add_argument("--refill", type=float, default=3.0, help="design B: seconds between dumps (default 3)")
    p.add_argument("--only", choices=("A", "B"), help="run one design")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("flight_designs: needs root (tracefs instances)", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(line_buffering=True)
    keep = parse_size(args.keep)
    print(f"flight_designs: {os.cpu_count()} CPUs, load ~{args.rate:,.0f} events/s pinned to CPU 0, "
          f"events {' '.join(EVENTS)}, history {args.keep}, {args.seconds:g} s measured after {args.warmup:g} s")
    with tempfile.TemporaryDirectory(prefix="tracewatch-designs-") as tmpd:
        tmp = Path(tmpd)
        if args.only != "B":
            summarize(f"A: tracewatch flight --keep {args.keep} (live reader + userspace ring), SIGUSR1 dumps",
                      design_a(args, keep, tmp))
        if args.only != "A":
            rb = design_b(args, keep, tmp)
            summarize(f"B: overwrite instance, {rb['buffer_size_kb'] // 1024} MiB per CPU, no reader "
                      f"(options/overwrite defaulted to {int(rb['overwrite_default'])}); drain on trigger", rb)
    left = [n for n in os.listdir(os.path.join(TraceFS().path, "instances")) if n.startswith("tracewatch-")]
    print(f"\ninstances left: {left or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
