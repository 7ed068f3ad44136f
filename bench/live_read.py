"""How fast LiveSource takes pages out of the kernel, read path vs mmap path.

Load: ``dd if=/dev/zero of=/dev/null bs=1`` pinned to one CPU (two syscalls per
byte) with ``raw_syscalls:sys_enter`` and ``sys_exit`` enabled; the reader runs
on another CPU.  For each path it prints pages/s, MB/s of pages, events/s
(the kernel's own count of events read), and events lost (per-CPU stats:
overrun + commit overrun + dropped).

    sudo .venv/bin/python bench/live_read.py                  # 4 s per path
    sudo .venv/bin/python bench/live_read.py -d 8 --walk      # also walk every page (decode cost)
    sudo .venv/bin/python bench/live_read.py --buffer-percent 10 --buffer-kb 4096
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from tracewatch.sources.live import LiveSource, mmap_supported  # noqa: E402
from tracewatch.sources.tracefs import Instance  # noqa: E402


def run_once(use_mmap: bool, args: argparse.Namespace) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    load_cpu = cpus[-1]
    reader_cpu = cpus[0] if len(cpus) > 1 else None
    with Instance() as inst:
        if args.buffer_kb:
            inst.buffer_size_kb = args.buffer_kb
        inst.enable("raw_syscalls:*")
        walk = None
        if args.walk:
            from tracewatch.formats.ring_page import walk_pages

            walk = walk_pages
            walk(bytes(inst.header_page().page_size), inst.header_page().page_size)  # compile outside the timing
        with LiveSource(inst, mmap=use_mmap, batch_pages=args.batch_pages,
                        buffer_percent=args.buffer_percent) as src:
            if reader_cpu is not None:
                os.sched_setaffinity(0, {reader_cpu})
            src.start()
            dd = subprocess.Popen(["dd", "if=/dev/zero", "of=/dev/null", "bs=1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=lambda: os.sched_setaffinity(0, {load_cpu}))
            t0 = time.perf_counter()
            cpu0 = os.times()
            pages = page_bytes = walked = 0
            try:
                stop_at = t0 + args.duration
                for _cpu, buf in src.batches():
                    pages += len(buf) // src.page_size
                    page_bytes += len(buf)
                    if walk is not None:
                        walked += len(walk(buf, src.page_size))
                    if time.perf_counter() >= stop_at and dd.poll() is None:
                        dd.kill()
                        src.stop()
            finally:
                if dd.poll() is None:
                    dd.kill()
                dd.wait()
            elapsed = time.perf_counter() - t0
            cpu1 = os.times()
            busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            stats = src.stats()
            events = sum(int(s.get("read_events", 0)) for s in stats.values())
            lost = src.lost_events()
            mode = src.mode
        os.sched_setaffinity(0, set(cpus))
    return {"mode": mode, "elapsed": elapsed, "pages": pages, "bytes": page_bytes, "events": events,
            "lost": lost, "walked": walked, "busy": busy}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--duration", type=float, default=4.0, help="seconds per path (default 4)")
    ap.add_argument("--walk", action="store_true", help="also walk every page with walk_pages")
    ap.add_argument("--batch-pages", type=int, default=64, help="pages per batch (default 64)")
    ap.add_argument("--buffer-percent", type=int, default=None, help="wake readers at this fill level")
    ap.add_argument("--buffer-kb", type=int, default=None, help="per-CPU buffer size in KiB")
    ap.add_argument("--path", choices=["read", "mmap", "both"], default="both")
    args = ap.parse_args(argv)

    with Instance() as probe:
        has_mmap = mmap_supported(probe)
        defaults = (probe.buffer_size_kb, probe.buffer_percent, probe.subbuf_size_kb)
    paths = {"read": [False], "mmap": [True], "both": [False, True]}[args.path]
    if not has_mmap and True in paths:
        print("mmap path: not available on this kernel (TRACE_MMAP_IOCTL_GET_READER)")
        paths = [p for p in paths if not p]
    print(f"load: dd bs=1 on one CPU, raw_syscalls:* enabled; {args.duration:g} s per path; "
          f"buffer {args.buffer_kb or defaults[0]} KiB/CPU, sub-buffer {defaults[2]} KiB, "
          f"buffer_percent {defaults[1] if args.buffer_percent is None else args.buffer_percent}, "
          f"batch {args.batch_pages} pages")
    print(f"{'path':6} {'pages/s':>10} {'MB/s':>8} {'events/s':>12} {'lost':>10} {'lost %':>7} "
          f"{'reader CPU':>10}")
    for use_mmap in paths:
        r = run_once(use_mmap, args)
        t = r["elapsed"]
        total = r["events"] + r["lost"]
        lost_pct = 100.0 * r["lost"] / total if total else 0.0
        print(f"{r['mode']:6} {r['pages'] / t:10.0f} {r['bytes'] / t / 1e6:8.1f} {r['events'] / t:12.0f} "
              f"{r['lost']:10d} {lost_pct:6.2f}% {100 * r['busy'] / t:9.1f}%")
        if args.walk:
            print(f"{'':6} walked {r['walked']} events ({r['walked'] / t:.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
