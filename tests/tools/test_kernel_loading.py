"""Compiled kernels loaded from numba's cache in a fresh process (``compiled.kernel``'s light
load, without numba's full registry set-up) give the results of the in-process run.

The test process compiles (or loads) every kernel first, so the fresh processes below
load them from the cache: the path every ``tracewatch`` command takes after its first run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO, fixture_path

# touches every kernel: the page walk, both merges, the type index, the split by type,
# the scalar and row gathers, pairing; prints a digest of what they computed
PROBE = r"""
import json, sys
import numpy as np
from tracewatch import open_trace
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.script.pairing import pair_arrays
path = sys.argv[1]
out = {}
with TraceDatReader(path) as r:
    idx = r.index()
    out["merged"] = [len(idx), int(idx.ts.sum() % 1000003), int(idx.cpu.sum())]
    ti = r.type_index()
    out["typed"] = int(ti.total)
with open_trace(path) as t:
    n = 0
    ids = 0
    for b in t.batches():
        n += len(b)
        for f in b.format_.fields:
            col = b.column_(f.name)
            if col.dtype.kind in "iu":
                ids = (ids + int(col.astype(np.int64).sum())) % 1000003
    out["batches"] = [n, ids]
    evs = list(t.events("syscalls:*"))
    out["events"] = [len(evs), sum(e.common_pid for e in evs) % 1000003]
    key = np.array([e.common_pid for e in evs])
    ts = np.array([e.common_ts for e in evs], np.int64)
    enter = np.array([e.name_.startswith("sys_enter") for e in evs])
    p = pair_arrays(key, ts, enter)
    out["pairs"] = [len(p.duration), int(p.duration.sum() % 1000003)]
print(json.dumps(out, sort_keys=True))
"""


def _run_probe(path: str, env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, path], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_kernels_loaded_from_the_cache_in_a_fresh_process_agree_with_plain_python():
    path = str(fixture_path("e_mixed.v6.dat"))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    first = _run_probe(path, env)  # compiles whatever the cache lacks, and fills it
    again = _run_probe(path, env)  # a fresh process: every kernel comes from the cache
    plain = _run_probe(path, dict(env, NUMBA_DISABLE_JIT="1"))  # the same source as Python
    assert first == again == plain
    assert first["merged"][0] == first["typed"] == first["batches"][0] > 1000
    assert first["pairs"][0] > 100


def test_report_in_a_fresh_process_matches_trace_cmd():
    path = fixture_path("e_mixed.v6.dat")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    r = subprocess.run([sys.executable, "-m", "tracewatch", "report", str(path)], capture_output=True,
                       env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == fixture_path("e_mixed.v6.dat.report.txt").read_bytes()
