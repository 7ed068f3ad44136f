"""How tracewatch's compiled loops are built: numba ``njit`` with an on-disk cache,
and a cheaper way of loading that cache at start-up.

Every kernel (the page walk, the k-way merges, the column gathers, pairing) is
decorated with :func:`kernel`.  With ``NUMBA_DISABLE_JIT=1`` the decorator
hands back the plain Python function, so the same source runs as Python.

Where the cache lives: numba's own choice (the package's ``__pycache__``, else a
directory under the user's home).  When it has none (a user who can write
neither: ``HOME`` unset or unwritable), a private directory under the temporary
directory (per user, mode 0700, checked to be ours), else no cache at all: a
kernel compiled afresh is slower to start, never an error.

Why a decorator of our own: loading a cached kernel makes numba call
``target_context.refresh()`` first, which imports and registers every lowering
implementation numba has (linalg, random, typed containers, jitclass, ...).  That
is ~0.15 s of a ~0.45 s start-up, and a kernel read back from the cache needs none
of it: its machine code is already linked and only calls numba's runtime (NRT).
So a cache load here initialises the runtime only; when the cache misses (first
run, changed source, other CPU) numba compiles as usual, and its compiler does
the full refresh itself.  Nothing changes for numba functions a user's script
defines: the light load is installed per kernel, on ours only, and only with
numba versions it was checked against.
"""

from __future__ import annotations

import os
import stat
import tempfile
from typing import Any, Callable, TypeVar

__all__ = ["kernel"]

F = TypeVar("F", bound=Callable[..., Any])


def kernel(func: F | None = None, *, nogil: bool = True) -> Any:
    """``@kernel``: compile ``func`` with numba (``cache=True``), loading the cache cheaply."""

    def wrap(f: F) -> F:
        dispatcher = _cached_njit(f, nogil)
        if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
            return dispatcher
        _light_cache_load(dispatcher)
        return dispatcher

    return wrap(func) if func is not None else wrap


def _cached_njit(f: F, nogil: bool) -> Any:
    """``njit(cache=True)`` of ``f``, with the cache where numba puts it, else in our private
    temporary directory, else none (numba raises when it finds no writable place)."""
    from numba import njit

    try:
        return njit(cache=True, nogil=nogil)(f)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        pass
    dispatcher = njit(nogil=nogil)(f)
    private = _private_cache_dir()
    if private is None:
        return dispatcher  # compiled in every process: slower to start, still right
    from numba.core import config

    # numba's user-provided locator reads CACHE_DIR when the cache is made: set it for this
    # one kernel only, so that nothing else (a user's own numba functions) is moved
    saved = config.CACHE_DIR
    config.CACHE_DIR = private
    try:
        dispatcher.enable_caching()
    except RuntimeError:
        pass  # no cache after all
    finally:
        config.CACHE_DIR = saved
    return dispatcher


def _private_cache_dir() -> str | None:
    """``$TMPDIR/tracewatch-numba-UID``, made mode 0700 if missing; None unless it is a real
    directory of this user that nobody else can write (a cache is code: another user's
    could run as us)."""
    path = os.path.join(tempfile.gettempdir(), f"tracewatch-numba-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return path


#: numba versions whose cache loading this light load was checked against
#: (tests/tools/test_kernel_loading.py); others load the usual way, a little slower
_CHECKED_NUMBA = ((0, 58), (0, 69))


def _numba_checked() -> bool:
    import numba

    try:
        version = tuple(int(x) for x in numba.__version__.split(".")[:2])
    except ValueError:
        return False
    return _CHECKED_NUMBA[0] <= version < _CHECKED_NUMBA[1]


def _light_cache_load(dispatcher: Any) -> None:
    if not _numba_checked():
        return
    cache = getattr(dispatcher, "_cache", None)
    load = getattr(cache, "_load_overload", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    if load is None or guard is None:  # another numba: keep its own loading
        return
    try:
        from numba.core.runtime import rtsys
    except ImportError:
        return

    def load_overload(sig: Any, target_context: Any) -> Any:
        # the runtime (NRT) is what cached kernels call into: allocation, refcounts
        rtsys.initialize(target_context)
        with guard():
            return load(sig, target_context)
        return None  # the guard swallowed an I/O error: numba compiles instead

    cache.load_overload = load_overload
