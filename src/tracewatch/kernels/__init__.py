"""The compiled kernels: numba loops over numpy arrays, one module per job.

    walk.py    ring-buffer pages -> per-event arrays (ts, offset, length, type)
    merge.py   per-CPU event streams -> trace-cmd's order (copied out, or as runs)
    group.py   events -> rows grouped by type id (a counting sort)
    gather.py  record bytes -> columns (scalar fields, fixed-width rows)

A kernel takes and fills numpy arrays and knows no tracewatch object: the modules
that give the arrays their meaning (``formats.ring_page``, ``formats.tracedat``,
``formats.records``, ``stream.batch``) call them.  Every kernel is declared with
:func:`tracewatch.compiled.kernel`; with ``NUMBA_DISABLE_JIT=1`` the same source
runs as Python.
"""
