"""Page-walk speed: the compiled ring-buffer walk over real pages, repeated.

Usage: python bench/walk_pages.py [TRACE.dat] [MIB]
Prints events/s for walk_pages alone (the first, compiling call is not timed).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tracewatch.formats.ring_page import walk_pages
from tracewatch.formats.tracedat import TraceDatReader


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "/work/shared/fixtures/a_syscalls.v6.dat"
    mib = int(argv[1]) if len(argv) > 1 else 256
    r = TraceDatReader(path)
    pages = np.concatenate([r.cpu_buffer(c)[0] for c in range(r.cpus)])
    reps = max(1, (mib << 20) // len(pages))
    buf = np.tile(pages, reps)
    walk_pages(buf[: r.page_size * 4], r.page_size)  # compile (or load the cache)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        idx = walk_pages(buf, r.page_size, commit_size=r.header_page.commit_size, little=r.little_endian)
        best = min(best, time.perf_counter() - t)
    n = len(idx)
    # the compiled loop alone, writing into output that is already faulted in (as a
    # live reader reusing its buffers would)
    from tracewatch.kernels.walk import walk_kernel
    n_pages = len(buf) // r.page_size
    outs = [np.zeros(n + n_pages, t) for t in (np.uint64, np.int64, np.int32, np.uint16)]
    per_page = [np.zeros(n_pages, t) for t in (np.uint64, np.int64, np.int64, np.int64, np.int32, np.int64,
                                               np.int64)]
    words = buf.view(np.uint32)
    kbest = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        walk_kernel(words, r.page_size // 4, 0, n_pages, 8 + r.header_page.commit_size,
                    r.header_page.commit_size == 8, not r.little_endian, *outs, 0, *per_page)
        kbest = min(kbest, time.perf_counter() - t)
    print(f"{path}: compiled loop alone: {n / kbest / 1e6:.1f} M events/s")
    print(f"{path}: {len(buf) >> 20} MiB, {n} events in {best * 1e3:.1f} ms: "
          f"{n / best / 1e6:.1f} M events/s, {len(buf) / best / 1e9:.2f} GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
