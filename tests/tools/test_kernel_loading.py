"""Compiled kernels loaded from numba's cache in a fresh process (``compiled.kernel``'s light
load, without numba's full registry set-up) give the results of the in-process run.

The test process compiles (or loads) every kernel first, so the fresh processes below
load them from the cache: the path every ``tracewatch`` command takes after its first run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


# -- where the cache goes when numba finds no place for it ---------------------------------------

def _numba_locators():
    """numba's cache implementation class, whose ``_locator_classes`` list the places it tries."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if impl is None or not hasattr(impl, "_locator_classes"):
        pytest.skip("this numba keeps its cache locators elsewhere")
    return impl


def test_without_a_cache_locator_kernels_cache_in_a_private_temp_dir(tmp_path, monkeypatch):
    """numba raises "no locator available" when neither the package's __pycache__ nor the
    home directory is writable; a kernel then caches under $TMPDIR/tracewatch-numba-UID."""
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        pytest.skip("NUMBA_DISABLE_JIT=1: nothing is compiled or cached")
    import tempfile

    import numba.core.config as numba_config

    from tracewatch import compiled

    impl = _numba_locators()
    # only the locator of NUMBA_CACHE_DIR (unset): numba finds no place, as for a user who can
    # write neither the package's __pycache__ nor a home directory
    monkeypatch.setattr(impl, "_locator_classes", impl._locator_classes[:1])
    monkeypatch.setattr(numba_config, "CACHE_DIR", "")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    from numba import njit

    with pytest.raises(RuntimeError, match="no locator"):
        njit(cache=True)(lambda x: x)  # what every kernel would have raised

    def add_one(a):
        return a + 1

    k = compiled.kernel(add_one)
    assert k(np.arange(3)).tolist() == [1, 2, 3]
    private = tmp_path / f"tracewatch-numba-{os.getuid()}"
    assert private.is_dir() and private.stat().st_mode & 0o777 == 0o700
    assert list(private.rglob("*add_one*.nbi")), "the kernel's cache index is in the private dir"
    assert numba_config.CACHE_DIR == ""  # set for that one kernel only


def test_a_temp_cache_dir_that_is_not_private_is_not_used(tmp_path, monkeypatch):
    """Someone else's directory (or one others can write) could hold a planted cache: such a
    directory is refused and the kernel runs uncached."""
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        pytest.skip("NUMBA_DISABLE_JIT=1: nothing is compiled or cached")
    import tempfile

    import numba.core.config as numba_config

    from tracewatch import compiled

    impl = _numba_locators()
    monkeypatch.setattr(impl, "_locator_classes", impl._locator_classes[:1])
    monkeypatch.setattr(numba_config, "CACHE_DIR", "")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    private = tmp_path / f"tracewatch-numba-{os.getuid()}"
    private.mkdir()
    private.chmod(0o777)
    assert compiled._private_cache_dir() is None
    if os.geteuid() == 0:
        private.chmod(0o700)
        assert compiled._private_cache_dir() == str(private)
        os.chown(private, 65534, 65534)
        assert compiled._private_cache_dir() is None  # not ours

    def times_two(a):
        return a * 2

    k = compiled.kernel(times_two)
    assert k(np.arange(3)).tolist() == [0, 2, 4]
    assert not list(tmp_path.rglob("*.nbi"))


def _report_ok(r: subprocess.CompletedProcess, oracle: bytes) -> None:
    assert r.returncode == 0, r.stderr[-3000:]
    assert b"Traceback" not in r.stderr
    assert r.stdout == oracle


def test_report_with_a_read_only_package_and_no_home(tmp_path):
    """The package's __pycache__ unwritable (a read-only mount of src/) and no usable home:
    `report` works, twice (the second run loads the kernels from the private temp cache)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private read-only mount")
    path = fixture_path("e_mixed.v6.dat")
    oracle = fixture_path("e_mixed.v6.dat.report.txt").read_bytes()
    src = REPO / "src"
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "NUMBA_DISABLE_JIT")}
    # a home under the read-only mount: root could create a missing one anywhere else
    env.update(PYTHONPATH=str(src), HOME=str(src / "no-such-home"), TMPDIR=str(tmp_path))
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(src),
           sys.executable, "-m", "tracewatch", "report", str(path)]
    # read-only indeed? (a probe file made all the same is removed at once)
    probe = subprocess.run(cmd[:9] + ["sh", "-c", f'if touch "{src}/.ro-probe" 2>/dev/null; '
                                                   f'then rm -f "{src}/.ro-probe"; exit 1; fi'],
                           env=env, capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private read-only mount here: {probe.stderr.decode(errors='replace')[-300:]}")
    _report_ok(subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, timeout=600), oracle)
    private = tmp_path / f"tracewatch-numba-{os.getuid()}"
    assert list(private.rglob("*.nbi")), "the kernels were cached in the private temp dir"
    _report_ok(subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, timeout=600), oracle)


def test_report_as_another_user_with_an_unwritable_home():
    """`tracewatch report` as nobody with HOME=/nonexistent (and the package root's): no
    traceback (numba once raised "cannot cache function '_walk_kernel': no locator
    available"), and the kernels cached in nobody's private temp dir."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv(1) to run as another user")
    import tempfile

    path = fixture_path("e_mixed.v6.dat")
    oracle = fixture_path("e_mixed.v6.dat.report.txt").read_bytes()
    # pytest's tmp_path sits in root's private directory: nobody needs a TMPDIR it can reach
    with tempfile.TemporaryDirectory(prefix="tw-nobody-") as tmp:
        os.chmod(tmp, 0o1777)
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "NUMBA_DISABLE_JIT")}
        env.update(PYTHONPATH=str(REPO / "src"), HOME="/nonexistent", TMPDIR=tmp)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        can = subprocess.run(as_nobody + [sys.executable, "-c",
                                          f"import numba, tracewatch; open({str(path)!r}).close()"],
                             env=env, cwd=tmp, capture_output=True, text=True)
        if can.returncode != 0:
            pytest.skip("user 65534 cannot run this Python, import tracewatch or read the fixture: "
                        + (can.stderr.strip().splitlines() or ["?"])[-1])
        r = subprocess.run(as_nobody + [sys.executable, "-m", "tracewatch", "report", str(path)], env=env,
                           cwd=tmp, capture_output=True, timeout=600)
        _report_ok(r, oracle)
        private = Path(tmp) / "tracewatch-numba-65534"
        assert private.stat().st_uid == 65534 and private.stat().st_mode & 0o777 == 0o700
        assert list(private.rglob("*.nbi")), "the kernels were cached in nobody's private temp dir"
