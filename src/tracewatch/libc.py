"""The C library through ctypes, opened once: mount(2), mmap(2), mallopt(3).

Opened by its soname: ``ctypes.util.find_library`` runs ``ldconfig -p`` in a
subprocess (~15 ms of every start-up), so it is only the fallback.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

__all__ = ["libc"]


@lru_cache(maxsize=None)
def libc() -> ctypes.CDLL:
    """The process's C library (errno kept for ``ctypes.get_errno``)."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c") or "libc.so.6", use_errno=True)
