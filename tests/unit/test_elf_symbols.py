"""ELF symbol tables: names, versions, file offsets for uprobes, stripped binaries, bad input.

Offsets are checked against GNU nm and readelf (the reference tools) on
programs built here with gcc (PIE and non-PIE) and on the system's libc.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tracewatch.formats.elf_symbols import ElfFile, ElfFormatError, SymbolError, load_symbols, split_version

PROG_C = r"""
volatile int sink;
__attribute__((noinline)) int leaf(int x) { sink += x; return x + 1; }
__attribute__((noinline)) static int helper(int x) { sink += 2 * x; return x; }
__attribute__((noinline)) int middle(int x) { return leaf(x) + helper(x); }
int main(void) { return middle(1) - 2; }
"""

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("readelf") is None
                               or shutil.which("nm") is None, reason="needs gcc, nm and readelf")


def _libc() -> str | None:
    for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"):
        if os.path.exists(p):
            return p
    return None


def readelf_loads(path: str) -> list[tuple[int, int, int]]:
    """(offset, vaddr, filesz) of each PT_LOAD, from readelf -lW."""
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    loads = []
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD":
            loads.append((int(parts[1], 16), int(parts[2], 16), int(parts[4], 16)))
    return loads


def reference_offset(path: str, value: int) -> int:
    for off, vaddr, filesz in readelf_loads(path):
        if vaddr <= value < vaddr + filesz:
            return value - vaddr + off
    raise AssertionError(f"{value:#x} in no PT_LOAD of {path}")


def nm_functions(path: str, dynamic: bool = False) -> dict[str, int]:
    cmd = ["nm", "--defined-only"] + (["-D"] if dynamic else []) + [path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    funcs = {}
    for line in out.splitlines():
        m = re.match(r"([0-9a-f]+) ([TtWi]) (\S+)$", line)
        if m:
            funcs[m.group(3)] = (int(m.group(1), 16), m.group(2))
    return funcs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("elf")
    src = d / "prog.c"
    src.write_text(PROG_C)
    out = {}
    for name, flags in (("pie", ["-fPIE", "-pie"]), ("nopie", ["-fno-pie", "-no-pie"])):
        path = d / f"prog_{name}"
        subprocess.run(["gcc", "-O1", *flags, "-o", str(path), str(src)], check=True)
        out[name] = str(path)
    stripped = d / "prog_stripped"
    shutil.copy(out["pie"], stripped)
    subprocess.run(["strip", str(stripped)], check=True)
    out["stripped"] = str(stripped)
    return out


@needs_gcc
@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_offsets_match_nm_and_readelf(built, kind):
    path = built[kind]
    elf = ElfFile(path)
    assert elf.is_pie_or_shared == (kind == "pie")
    assert not elf.stripped
    ref = nm_functions(path)
    for name in ("leaf", "middle", "main", "helper"):
        value, _t = ref[name]
        sym = elf.function(name)
        assert sym.value == value
        assert sym.offset == reference_offset(path, value)
    if kind == "nopie":
        assert elf.function("leaf").value >= 0x400000 > elf.function("leaf").offset
    assert elf.function("helper").binding == "local"


@needs_gcc
def test_glob_lists_functions_once(built):
    elf = ElfFile(built["pie"])
    names = [s.name for s in elf.functions("*i*")]
    assert {"middle", "main"} <= set(names)
    assert len(names) == len(set(names))
    assert [s.name for s in elf.functions("leaf")] == ["leaf"]
    assert elf.functions("nothing*") == []


@needs_gcc
def test_stripped_binary_says_so(built):
    elf = ElfFile(built["stripped"])
    assert elf.stripped
    with pytest.raises(SymbolError, match=r"no function 'leaf': the binary is stripped \(no \.symtab"):
        elf.function("leaf")


@needs_gcc
def test_bad_name_suggests_close_ones(built):
    with pytest.raises(SymbolError, match=r"no function 'midle' in its symbol tables; did you mean middle\?"):
        ElfFile(built["pie"]).function("midle")
    with pytest.raises(SymbolError, match=r"'sink' is not a function \(an object symbol\)"):
        ElfFile(built["pie"]).function("sink")


@needs_gcc
def test_truncated_file(built, tmp_path):
    data = open(built["pie"], "rb").read()
    cut = tmp_path / "cut"
    cut.write_bytes(data[:100])
    with pytest.raises(ElfFormatError, match=r"cut: program headers at offset 0x40 run past the end of the "
                                             r"file \(100 bytes\); the file is truncated"):
        ElfFile(str(cut))
    cut.write_bytes(data[:4096])
    with pytest.raises(ElfFormatError, match=r"cut: section headers at offset 0x[0-9a-f]+ run past the end of the "
                                             r"file \(4096 bytes\); the file is truncated"):
        ElfFile(str(cut))


def test_not_elf(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ElfFormatError, match=r"notes.txt: not an ELF file \(starts with 68656c6c\)"):
        ElfFile(str(text))
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ElfFormatError, match=r"run.sh: a script \(#!/bin/sh\), not an ELF binary"):
        ElfFile(str(script))
    with pytest.raises(ElfFormatError, match="no such file"):
        ElfFile(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ElfFormatError, match="empty file"):
        ElfFile(str(empty))


def test_split_version():
    assert split_version("malloc@@GLIBC_2.2.5") == ("malloc", "GLIBC_2.2.5", False)
    assert split_version("memcpy@GLIBC_2.2.5") == ("memcpy", "GLIBC_2.2.5", True)
    assert split_version("leaf") == ("leaf", None, None)


libc = pytest.mark.skipif(_libc() is None or shutil.which("nm") is None, reason="needs the x86_64 glibc and nm")


@libc
def test_libc_versioned_names():
    path = _libc()
    elf = load_symbols(path)
    assert load_symbols(path) is elf  # cached
    dyn = nm_functions(path, dynamic=True)
    m = elf.function("malloc")
    assert m.versioned_name in dyn
    assert m.versioned_name.startswith("malloc@@GLIBC_")
    assert elf.function(m.versioned_name) == m
    assert m.value == dyn[m.versioned_name][0]
    assert m.offset == reference_offset(path, m.value)
    # a hidden (compat) version by its full name
    hidden = [n for n, (_v, t) in dyn.items() if re.fullmatch(r"\w+@GLIBC_[\d.]+", n) and t == "T"]
    if hidden:
        s = elf.function(hidden[0])
        assert s.hidden and s.versioned_name == hidden[0]


@libc
def test_libc_ifunc_is_explained():
    elf = load_symbols(_libc())
    ifuncs = [s for s in elf.symbols() if s.kind == "ifunc" and not s.hidden and s.table == ".dynsym"]
    if not ifuncs:
        pytest.skip("this libc has no IFUNC symbols")
    name = "memcpy" if any(s.name == "memcpy" for s in ifuncs) else ifuncs[0].name
    with pytest.raises(SymbolError, match=r"is an IFUNC \(a resolver that picks an implementation"):
        elf.function(name)


@libc
def test_libc_aliases_are_one_probe():
    elf = load_symbols(_libc())
    syms = elf.functions("*malloc")
    values = [s.value for s in syms]
    assert len(values) == len(set(values))
    assert "malloc" in [s.name for s in syms]
