"""Kernel symbol lookups against libtraceevent's own ``tep_find_function`` (through ctypes).

Several kallsyms names often share an address (``__do_softirq`` and
``__softirqentry_text_start``); trace-cmd's choice among them is an accident of how
libtraceevent stores and searches its table, and tracewatch must make the same one
(third-party/langraph_v7.dat names ``__do_softirq`` in its kernel stacks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random

import pytest

from tracewatch.formats.plugins import find_function
from tracewatch.formats.symbols import KernelSymbols, TraceSymbols


def _libtraceevent():
    name = ctypes.util.find_library("traceevent")
    if name is None:
        pytest.skip("libtraceevent is not installed (it comes with trace-cmd)")
    lib = ctypes.CDLL(name)
    lib.tep_alloc.restype = ctypes.c_void_p
    lib.tep_parse_kallsyms.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.tep_find_function.argtypes = [ctypes.c_void_p, ctypes.c_ulonglong]
    lib.tep_find_function.restype = ctypes.c_char_p
    lib.tep_find_function_address.argtypes = [ctypes.c_void_p, ctypes.c_ulonglong]
    lib.tep_find_function_address.restype = ctypes.c_ulonglong
    lib.tep_free.argtypes = [ctypes.c_void_p]
    return lib


def _kallsyms(seed: int) -> str:
    """A kallsyms text with runs of aliases (2-4 names at one address) among single symbols."""
    rnd = random.Random(seed)
    lines = []
    addr = 0xFFFFFFFF81000000
    for i in range(rnd.randint(5, 120)):
        addr += rnd.choice((0x10, 0x40, 0x100))
        for k in range(rnd.choice((1, 1, 1, 2, 3, 4))):
            kind, name = rnd.choice((("T", f"sym{i}_{k}"),) * 8 + (("A", f"abs{i}_{k}"), ("t", f"$x{i}_{k}")))
            lines.append(f"{addr:016x} {kind} {name}")
    rnd.shuffle(lines) if seed % 3 == 0 else None  # kallsyms is not always sorted (modules)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(12))
def test_lookups_name_the_symbol_libtraceevent_names(seed):
    lib = _libtraceevent()
    text = _kallsyms(seed)
    tep = ctypes.c_void_p(lib.tep_alloc())
    try:
        assert lib.tep_parse_kallsyms(tep, text.encode()) == 0
        ours = KernelSymbols.parse(text)
        symbols = TraceSymbols(kallsyms=ours)
        addrs = sorted(set(ours.addrs))
        probes = {addrs[0] - 1, addrs[-1] + 8}
        for a in addrs:
            probes |= {a, a + 1, a + 7}
        checked = 0
        for addr in sorted(probes):
            want = lib.tep_find_function(tep, addr)
            want_name = want.decode() if want else None
            got = ours.lookup(addr)
            assert (got[0] if got else None) == want_name, hex(addr)
            found = find_function(symbols, addr)
            assert (found[0] if found else None) == want_name, hex(addr)
            if want is not None:
                assert got[2] == lib.tep_find_function_address(tep, addr)
            checked += 1
        assert checked > 3
    finally:
        lib.tep_free(tep)


def test_an_address_inside_aliased_symbols_names_the_first_line_of_the_file():
    text = ("ffffffffa9800000 T __do_softirq\n"
            "ffffffffa9800000 T __softirqentry_text_start\n"
            "ffffffffa9800400 T next_function\n")
    ks = KernelSymbols.parse(text)
    assert ks.lookup(0xFFFFFFFFA980022D) == ("__do_softirq", 0x22D, 0xFFFFFFFFA9800000)
    assert ks.lookup(0xFFFFFFFFA9800500) is None  # past the last symbol: no range (as libtraceevent)
