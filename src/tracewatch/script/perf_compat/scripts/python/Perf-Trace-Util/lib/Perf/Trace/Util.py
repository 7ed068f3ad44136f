"""tracewatch's ``Util`` module for ``perf script -s`` Python scripts.

Same names and results as perf's Util.py: time helpers (``nsecs``,
``nsecs_secs``, ``nsecs_nsecs``, ``nsecs_str``), ``avg``, ``add_stats``,
``clear_term``, ``syscall_name``, ``strerror`` and the futex constants.

``syscall_name`` needs no ``audit`` package (perf prints an install hint and
falls back to numbers without it): names come from the x86_64 table shipped
beside this file, overlaid with the installed ``<asm/unistd_64.h>`` when it
exists.  Unknown numbers print as the number, as in perf.
"""

import errno
import os
import re

__all__ = [
    "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_PRIVATE_FLAG", "FUTEX_CLOCK_REALTIME", "FUTEX_CMD_MASK",
    "NSECS_PER_SEC", "avg", "nsecs", "nsecs_secs", "nsecs_nsecs", "nsecs_str", "add_stats",
    "clear_term", "syscall_name", "strerror",
]

FUTEX_WAIT = 0
FUTEX_WAKE = 1
FUTEX_PRIVATE_FLAG = 128
FUTEX_CLOCK_REALTIME = 256
FUTEX_CMD_MASK = ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)

NSECS_PER_SEC = 1000000000


# The arithmetic below keeps perf's results exactly, including true division
# (floats) and the one-element tuple nsecs_str returns: scripts print them.
def avg(total, n):
    return total / n


def nsecs(secs, nsecs):
    """Seconds and nanoseconds (the common_secs/common_nsecs arguments) -> nanoseconds."""
    return secs * NSECS_PER_SEC + nsecs


def nsecs_secs(nsecs):
    return nsecs / NSECS_PER_SEC


def nsecs_nsecs(nsecs):
    return nsecs % NSECS_PER_SEC


def nsecs_str(nsecs):
    return ("%5u.%09u" % (nsecs_secs(nsecs), nsecs_nsecs(nsecs)),)


def add_stats(dict, key, value):
    """Keep (min, max, running avg, count) of ``value`` under ``key``.

    The running "average" is perf's ``(avg + value) / 2``, not a mean.
    """
    if key not in dict:
        dict[key] = (value, value, value, 1)
    else:
        lo, hi, average, count = dict[key]
        dict[key] = (min(lo, value), max(hi, value), (average + value) / 2, count + 1)


def clear_term():
    print("\x1b[H\x1b[2J")


_HERE = os.path.dirname(os.path.abspath(__file__))
_UNISTD_HEADERS = ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h")
_DEFINE_NR = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.M)
_syscall_names = None


def _load_syscall_names():
    names = {}
    with open(os.path.join(_HERE, "syscall_names_x86_64.txt"), encoding="ascii") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                nr, name = line.split()
                names[int(nr)] = name
    for header in _UNISTD_HEADERS:
        try:
            with open(header, encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        names.update((int(nr), name) for name, nr in _DEFINE_NR.findall(text))
        break
    return names


def syscall_name(id):
    """The x86_64 name of system call number ``id`` (``"read"``), or the number as text."""
    global _syscall_names
    if _syscall_names is None:
        _syscall_names = _load_syscall_names()
    try:
        return _syscall_names[id]
    except (KeyError, TypeError):
        return str(id)


def strerror(nr):
    """``-2`` -> ``"ENOENT"`` (the errno name, as perf's helper gives)."""
    try:
        return errno.errorcode[abs(nr)]
    except (KeyError, TypeError):
        return "Unknown %d errno" % nr
