"""ELF symbol tables, for placing uprobes on functions by name.

A uprobe is placed at ``PATH:OFFSET`` where OFFSET is a *file* offset.  This
module reads an ELF file's symbol tables (``.symtab`` and ``.dynsym``) and
its program headers, and turns a function name into that offset::

    elf = ElfFile("/lib/x86_64-linux-gnu/libc.so.6")
    sym = elf.function("malloc")            # or "malloc@@GLIBC_2.2.5"
    sym.offset                              # file offset for uprobe_events
    [s.name for s in elf.functions("str*cmp")]

Names carry their symbol versions as the GNU tools print them
(``malloc@@GLIBC_2.2.5`` is the default version, ``memcpy@GLIBC_2.2.5`` a
hidden one); a plain name means the default or unversioned symbol.  The
offset is ``st_value - p_vaddr + p_offset`` of the ``PT_LOAD`` segment that
holds the symbol, which is right for PIE, non-PIE and shared objects alike.

A binary without ``.symtab`` (``strip``) still has ``.dynsym`` when it is
dynamically linked; its debug file is looked up by build id under
``/usr/lib/debug/.build-id/`` and used when present.  When a name is in none
of these, :class:`SymbolError` says the binary is stripped.

Why our own reader and not pyelftools: we need headers, two symbol tables, a
version table and the program headers, nothing of DWARF.  Symbol tables are
read as numpy structured arrays in one step (libpython's ~20k symbols in
milliseconds, where a record-at-a-time parser takes a large part of a
second), and the project gains no dependency.  Both ELF classes and byte
orders are read; the file is identified from its first bytes before anything
else is parsed.
"""

from __future__ import annotations

import difflib
import fnmatch
import mmap
import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import ElfFormatError, SymbolError

__all__ = ["ElfFile", "ElfSymbol", "SymbolError", "ElfFormatError", "split_version", "load_symbols"]


# --------------------------------------------------------------------------- constants (elf.h)

ET_EXEC, ET_DYN = 2, 3
PT_LOAD = 1
PF_X = 1
SHT_SYMTAB, SHT_DYNSYM, SHT_NOTE, SHT_NOBITS = 2, 11, 7, 8
SHT_GNU_VERDEF, SHT_GNU_VERSYM = 0x6FFFFFFD, 0x6FFFFFFF
SHN_UNDEF, SHN_LORESERVE = 0, 0xFF00
STT_OBJECT, STT_FUNC, STT_GNU_IFUNC = 1, 2, 10
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
NT_GNU_BUILD_ID = 3
VERSYM_HIDDEN = 0x8000

_TYPE_NAMES = {0: "notype", 1: "object", 2: "func", 3: "section", 4: "file", 5: "common", 6: "tls",
               10: "ifunc"}
_BIND_NAMES = {0: "local", 1: "global", 2: "weak", 10: "unique"}

DEBUG_ROOT = "/usr/lib/debug"


def _dtypes(is64: bool, order: str) -> dict[str, np.dtype]:
    """Structured dtypes of the ELF records we read, for one class and byte order."""
    addr = order + ("u8" if is64 else "u4")
    if is64:
        ehdr = [("ident", "V16"), ("type", order + "u2"), ("machine", order + "u2"), ("version", order + "u4"),
                ("entry", addr), ("phoff", addr), ("shoff", addr), ("flags", order + "u4"),
                ("ehsize", order + "u2"), ("phentsize", order + "u2"), ("phnum", order + "u2"),
                ("shentsize", order + "u2"), ("shnum", order + "u2"), ("shstrndx", order + "u2")]
        phdr = [("type", order + "u4"), ("flags", order + "u4"), ("offset", addr), ("vaddr", addr),
                ("paddr", addr), ("filesz", addr), ("memsz", addr), ("align", addr)]
        sym = [("name", order + "u4"), ("info", "u1"), ("other", "u1"), ("shndx", order + "u2"),
               ("value", addr), ("size", addr)]
    else:
        ehdr = [("ident", "V16"), ("type", order + "u2"), ("machine", order + "u2"), ("version", order + "u4"),
                ("entry", addr), ("phoff", addr), ("shoff", addr), ("flags", order + "u4"),
                ("ehsize", order + "u2"), ("phentsize", order + "u2"), ("phnum", order + "u2"),
                ("shentsize", order + "u2"), ("shnum", order + "u2"), ("shstrndx", order + "u2")]
        phdr = [("type", order + "u4"), ("offset", addr), ("vaddr", addr), ("paddr", addr),
                ("filesz", addr), ("memsz", addr), ("flags", order + "u4"), ("align", addr)]
        sym = [("name", order + "u4"), ("value", addr), ("size", addr), ("info", "u1"), ("other", "u1"),
               ("shndx", order + "u2")]
    shdr = [("name", order + "u4"), ("type", order + "u4"), ("flags", addr), ("addr", addr),
            ("offset", addr), ("size", addr), ("link", order + "u4"), ("info", order + "u4"),
            ("addralign", addr), ("entsize", addr)]
    return {k: np.dtype(v) for k, v in (("ehdr", ehdr), ("phdr", phdr), ("shdr", shdr), ("sym", sym))}


# --------------------------------------------------------------------------- symbols

@dataclass(frozen=True)
class ElfSymbol:
    """One function (or other symbol) of an ELF file.

    ``name`` is the bare name (``malloc``); ``version`` its symbol version
    (``GLIBC_2.2.5``) or None; ``hidden`` True for a non-default version
    (printed ``name@VERSION``; the default is ``name@@VERSION``).  ``value``
    is ``st_value`` (a virtual address), ``offset`` the file offset a uprobe
    needs (None when no loaded segment holds it).
    """

    name: str
    version: str | None
    hidden: bool
    value: int
    size: int
    kind: str  # func, ifunc, object, ...
    binding: str  # local, global, weak
    table: str  # .symtab, .dynsym, or the debug file's .symtab
    offset: int | None

    @property
    def versioned_name(self) -> str:
        """``malloc@@GLIBC_2.2.5``, ``memcpy@GLIBC_2.2.5`` or just ``name``."""
        if not self.version:
            return self.name
        return f"{self.name}{'@' if self.hidden else '@@'}{self.version}"

    @property
    def is_function(self) -> bool:
        return self.kind in ("func", "ifunc")


def split_version(name: str) -> tuple[str, str | None, bool | None]:
    """``malloc@@GLIBC_2.2.5`` -> ("malloc", "GLIBC_2.2.5", False); ``a@V`` -> ("a", "V", True);
    ``a`` -> ("a", None, None)."""
    if "@@" in name:
        base, _, ver = name.partition("@@")
        return base, ver, False
    if "@" in name:
        base, _, ver = name.partition("@")
        return base, ver, True
    return name, None, None


class ElfFile:
    """An ELF file's headers and symbol tables, read lazily and cached."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise ElfFormatError(f"{path}: empty file, not an ELF binary")
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise ElfFormatError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ElfFormatError(f"{path}: is a directory, not an ELF binary") from None
        except PermissionError:
            raise ElfFormatError(f"{path}: permission denied") from None
        except OSError as e:
            if isinstance(e, ElfFormatError):
                raise
            raise ElfFormatError(f"{path}: cannot read: {e.strerror}") from None
        self.data = np.frombuffer(self._map, dtype=np.uint8)
        self._identify()
        self._symbols: list[ElfSymbol] | None = None
        self._debug_file: ElfFile | None | bool = False  # False: not looked up yet

    # -- identification and headers
    def _identify(self) -> None:
        head = bytes(self.data[:16])
        if head[:4] != b"\x7fELF":
            if head[:2] == b"#!":
                line = bytes(self.data[:128]).split(b"\n", 1)[0].decode("utf-8", "replace")
                raise ElfFormatError(f"{self.path}: a script ({line}), not an ELF binary; "
                                     f"probe its interpreter instead")
            raise ElfFormatError(f"{self.path}: not an ELF file (starts with {head[:4].hex()})")
        if head[4] not in (1, 2) or head[5] not in (1, 2):
            raise ElfFormatError(f"{self.path}: unknown ELF class {head[4]} / data encoding {head[5]}")
        self.is64 = head[4] == 2
        self.little = head[5] == 1
        self._dt = _dtypes(self.is64, "<" if self.little else ">")
        self.ehdr = self._record("ehdr", 0, "ELF header")
        self.type = int(self.ehdr["type"])
        self.machine = int(self.ehdr["machine"])
        self.segments = self._table("phdr", int(self.ehdr["phoff"]), int(self.ehdr["phnum"]),
                                    int(self.ehdr["phentsize"]), "program headers")
        shnum = int(self.ehdr["shnum"])
        shoff = int(self.ehdr["shoff"])
        if shnum == 0 and shoff:
            # more than 0xff00 sections: the count lives in section 0's size
            first = self._record("shdr", shoff, "section header 0")
            shnum = int(first["size"])
        self.sections = self._table("shdr", shoff, shnum, int(self.ehdr["shentsize"]), "section headers")
        shstrndx = int(self.ehdr["shstrndx"])
        if shstrndx == 0xFFFF and len(self.sections):
            shstrndx = int(self.sections[0]["link"])
        self.section_names: list[str] = []
        if 0 < shstrndx < len(self.sections):
            strtab = self._section_bytes(shstrndx)
            self.section_names = [_cstr(strtab, int(n)) for n in self.sections["name"]]
        else:
            self.section_names = [""] * len(self.sections)

    def _record(self, kind: str, offset: int, what: str) -> np.void:
        dt = self._dt[kind]
        if offset < 0 or offset + dt.itemsize > len(self.data):
            raise ElfFormatError(f"{self.path}: {what} at offset {offset:#x} is past the end of the file "
                                 f"({len(self.data)} bytes); the file is truncated")
        return self.data[offset : offset + dt.itemsize].view(dt)[0]

    def _table(self, kind: str, offset: int, count: int, entsize: int, what: str) -> np.ndarray:
        dt = self._dt[kind]
        if count == 0:
            return np.zeros(0, dt)
        if entsize and entsize != dt.itemsize:
            raise ElfFormatError(f"{self.path}: {what} entries are {entsize} bytes, expected {dt.itemsize}")
        end = offset + count * dt.itemsize
        if offset <= 0 or end > len(self.data):
            raise ElfFormatError(f"{self.path}: {what} at offset {offset:#x} run past the end of the file "
                                 f"({len(self.data)} bytes); the file is truncated")
        return self.data[offset:end].view(dt)

    def _section_bytes(self, index: int) -> bytes:
        sh = self.sections[index]
        if int(sh["type"]) == SHT_NOBITS:
            return b""
        off, size = int(sh["offset"]), int(sh["size"])
        if off + size > len(self.data):
            raise ElfFormatError(f"{self.path}: section {self.section_names[index] or index} at offset "
                                 f"{off:#x} runs past the end of the file; the file is truncated")
        return bytes(self.data[off : off + size])

    def section_index(self, name: str) -> int | None:
        try:
            return self.section_names.index(name)
        except ValueError:
            return None

    def has_section(self, name: str) -> bool:
        return name in self.section_names

    @property
    def is_pie_or_shared(self) -> bool:
        """ET_DYN: a PIE executable or a shared object (loaded at a random base)."""
        return self.type == ET_DYN

    @property
    def stripped(self) -> bool:
        """No ``.symtab`` (``strip`` removes it; ``.dynsym`` may remain)."""
        return not any(int(t) == SHT_SYMTAB for t in self.sections["type"])

    @property
    def build_id(self) -> str | None:
        """The GNU build id (hex), from the ``.note.gnu.build-id`` note."""
        for i, t in enumerate(self.sections["type"].tolist()):
            if t != SHT_NOTE:
                continue
            note = self._section_bytes(i)
            pos = 0
            order = "little" if self.little else "big"
            while pos + 12 <= len(note):
                namesz = int.from_bytes(note[pos : pos + 4], order)
                descsz = int.from_bytes(note[pos + 4 : pos + 8], order)
                ntype = int.from_bytes(note[pos + 8 : pos + 12], order)
                name_end = pos + 12 + ((namesz + 3) & ~3)
                desc = note[name_end : name_end + descsz]
                if ntype == NT_GNU_BUILD_ID and note[pos + 12 : pos + 12 + namesz].rstrip(b"\0") == b"GNU":
                    return desc.hex()
                pos = name_end + ((descsz + 3) & ~3)
        return None

    # -- addresses
    def file_offset(self, vaddr: int) -> int | None:
        """The file offset of virtual address ``vaddr`` (None: in no loaded, file-backed part)."""
        off = int(self.file_offsets(np.array([vaddr], np.uint64))[0])
        return None if off < 0 else off

    def file_offsets(self, vaddrs: np.ndarray) -> np.ndarray:
        """:meth:`file_offset` of many addresses at once (int64; -1 where none)."""
        v = np.asarray(vaddrs).astype(np.uint64)
        out = np.full(len(v), -1, np.int64)
        seg = self.segments
        load = seg[seg["type"] == PT_LOAD] if len(seg) else seg
        # executable segments last, so that they win where segments overlap (code lives there)
        order = sorted(range(len(load)), key=lambda i: 1 if int(load["flags"][i]) & PF_X else 0)
        for i in order:
            lo = np.uint64(int(load["vaddr"][i]))
            hi = np.uint64(int(load["vaddr"][i]) + int(load["filesz"][i]))
            hit = (v >= lo) & (v < hi)
            out[hit] = (v[hit] - lo).astype(np.int64) + int(load["offset"][i])
        return out

    def in_executable_segment(self, vaddr: int) -> bool:
        for s in self.segments:
            if int(s["type"]) == PT_LOAD and int(s["flags"]) & PF_X and \
                    int(s["vaddr"]) <= vaddr < int(s["vaddr"]) + int(s["filesz"]):
                return True
        return False

    # -- symbols
    def symbols(self) -> list[ElfSymbol]:
        """Every defined symbol of ``.symtab`` and ``.dynsym`` (one entry per
        name, version and address), with the debug file's when the binary is stripped."""
        if self._symbols is None:
            out: list[ElfSymbol] = []
            seen: set[tuple[str, str | None, int]] = set()
            for kind in (SHT_SYMTAB, SHT_DYNSYM):
                for s in self._read_table(kind):
                    key = (s.name, s.version, s.value)
                    if key not in seen:
                        seen.add(key)
                        out.append(s)
            if self.stripped:
                dbg = self.debug_file()
                if dbg is not None:
                    extra = dbg._read_table(SHT_SYMTAB)
                    offs = self.file_offsets(np.array([s.value for s in extra], np.uint64)).tolist()
                    for s, off in zip(extra, offs):
                        if (s.name, s.version, s.value) in seen:
                            continue
                        seen.add((s.name, s.version, s.value))
                        off = off if off >= 0 else None
                        out.append(ElfSymbol(s.name, s.version, s.hidden, s.value, s.size, s.kind, s.binding,
                                             f"{dbg.path} .symtab", off))
            self._symbols = out
        return self._symbols

    def _read_table(self, sh_type: int) -> list[ElfSymbol]:
        idx = [i for i, t in enumerate(self.sections["type"].tolist()) if t == sh_type]
        if not idx:
            return []
        i = idx[0]
        sh = self.sections[i]
        table_name = ".symtab" if sh_type == SHT_SYMTAB else ".dynsym"
        dt = self._dt["sym"]
        count = int(sh["size"]) // dt.itemsize
        if count == 0 or int(sh["type"]) == SHT_NOBITS:
            return []
        syms = self._table("sym", int(sh["offset"]), count, 0, f"symbol table {table_name}")
        link = int(sh["link"])
        strtab = self._section_bytes(link) if 0 < link < len(self.sections) else b""
        versions = self._versions(i, count) if sh_type == SHT_DYNSYM else None
        info = syms["info"]
        stype = (info & 0xF).astype(np.int64)
        bind = (info >> 4).astype(np.int64)
        shndx = syms["shndx"].astype(np.int64)
        keep = (shndx != SHN_UNDEF) & (stype != 3) & (stype != 4) & (syms["name"] != 0)
        out = []
        values = syms["value"].astype(np.uint64)
        offsets = self.file_offsets(values)
        offsets[shndx >= SHN_LORESERVE] = -1  # absolute and common symbols are no code
        offsets_py = offsets.tolist()
        for j in np.flatnonzero(keep).tolist():
            name = _cstr(strtab, int(syms["name"][j]))
            if not name:
                continue
            version, hidden = None, False
            if versions is not None:
                version, hidden = versions[j]
            elif "@" in name:
                # .symtab of a shared object keeps assembler .symver names as they are
                name, version, h = split_version(name)
                hidden = bool(h)
            value = int(values[j])
            out.append(ElfSymbol(name, version, hidden, value, int(syms["size"][j]),
                                 _TYPE_NAMES.get(int(stype[j]), str(int(stype[j]))),
                                 _BIND_NAMES.get(int(bind[j]), str(int(bind[j]))), table_name,
                                 offsets_py[j] if offsets_py[j] >= 0 else None))
        return out

    def _versions(self, dynsym_index: int, count: int) -> list[tuple[str | None, bool]] | None:
        """Per .dynsym entry: (version name, hidden), from .gnu.version and .gnu.version_d."""
        types = self.sections["type"].tolist()
        vs = [i for i, t in enumerate(types) if t == SHT_GNU_VERSYM and int(self.sections[i]["link"]) == dynsym_index]
        if not vs:
            return None
        order = "<" if self.little else ">"
        versym = np.frombuffer(self._section_bytes(vs[0]), dtype=order + "u2")[:count]
        names: dict[int, str] = {}
        vd = [i for i, t in enumerate(types) if t == SHT_GNU_VERDEF]
        if vd:
            data = self._section_bytes(vd[0])
            strtab = self._section_bytes(int(self.sections[vd[0]]["link"]))
            e = "little" if self.little else "big"
            pos, seen = 0, 0
            n = int(self.sections[vd[0]]["info"]) or 1 << 16
            while pos + 20 <= len(data) and seen < n:
                ndx = int.from_bytes(data[pos + 4 : pos + 6], e)
                cnt = int.from_bytes(data[pos + 6 : pos + 8], e)
                aux = int.from_bytes(data[pos + 12 : pos + 16], e)
                nxt = int.from_bytes(data[pos + 16 : pos + 20], e)
                if cnt and pos + aux + 8 <= len(data):
                    names[ndx] = _cstr(strtab, int.from_bytes(data[pos + aux : pos + aux + 4], e))
                seen += 1
                if nxt == 0:
                    break
                pos += nxt
        out: list[tuple[str | None, bool]] = []
        for v in versym.tolist():
            ndx = v & 0x7FFF
            if ndx <= 1:
                out.append((None, False))
            else:
                out.append((names.get(ndx), bool(v & VERSYM_HIDDEN)))
        out.extend([(None, False)] * (count - len(out)))
        return out

    def debug_file(self) -> "ElfFile | None":
        """The separate debug file with the full ``.symtab``, found by build id, if installed."""
        if self._debug_file is False:
            self._debug_file = None
            bid = self.build_id
            if bid and len(bid) > 2:
                path = os.path.join(DEBUG_ROOT, ".build-id", bid[:2], bid[2:] + ".debug")
                if os.path.exists(path):
                    try:
                        self._debug_file = ElfFile(path)
                    except ElfFormatError:
                        self._debug_file = None
        return self._debug_file  # type: ignore[return-value]

    # -- lookup
    def functions(self, pattern: str = "*") -> list[ElfSymbol]:
        """Functions whose name (bare or versioned) matches the shell glob ``pattern``,
        one per address (aliases such as ``__libc_malloc`` / ``malloc`` give one),
        IFUNC resolvers and symbols outside executable segments left out."""
        by_addr: dict[int, ElfSymbol] = {}
        for s in self.symbols():
            if s.kind != "func" or s.offset is None or s.value == 0:
                continue
            if not (fnmatch.fnmatchcase(s.name, pattern) or fnmatch.fnmatchcase(s.versioned_name, pattern)):
                continue
            if not self.in_executable_segment(s.value):
                continue
            old = by_addr.get(s.value)
            if old is None or _preference(s) < _preference(old):
                by_addr[s.value] = s
        return sorted(by_addr.values(), key=lambda s: s.value)

    def function(self, name: str) -> ElfSymbol:
        """The function ``name`` (``malloc``, ``malloc@@GLIBC_2.2.5``, ``memcpy@GLIBC_2.2.5``).

        Raises :class:`SymbolError` with a one-line reason: not there (with
        the closest names), stripped binary, a variable, an IFUNC resolver.
        """
        base, version, hidden = split_version(name)
        cands = [s for s in self.symbols() if s.name == base]
        if version is not None:
            # name@@V wants the default version V; name@V either (as a reference does)
            cands = [s for s in cands if s.version == version and (hidden or not s.hidden)]
        elif cands:
            # the default version (or an unversioned symbol) wins; then any
            default = [s for s in cands if not s.hidden]
            cands = default or cands
        funcs = [s for s in cands if s.is_function]
        if not funcs:
            if cands:
                kinds = "/".join(sorted({s.kind for s in cands}))
                raise SymbolError(f"{self.path}: {name!r} is not a function (an {kinds} symbol)"
                                  if kinds == "object" else f"{self.path}: {name!r} is not a function ({kinds} symbol)")
            raise SymbolError(self._not_found(name, base))
        plain = [s for s in funcs if s.kind == "func"]
        if not plain:
            s = funcs[0]
            impls = [f.name for f in self.functions(f"*{base.lstrip('_')}*") if f.name != base][:4]
            hint = f"; probe an implementation instead, e.g. {', '.join(impls)}" if impls else ""
            raise SymbolError(f"{self.path}: {s.versioned_name} is an IFUNC (a resolver that picks an "
                              f"implementation at load time){hint}")
        best = min(plain, key=_preference)
        if best.offset is None:
            raise SymbolError(f"{self.path}: {best.versioned_name} at {best.value:#x} is in no loaded segment")
        return best

    def _not_found(self, name: str, base: str) -> str:
        names = sorted({s.name for s in self.symbols() if s.is_function})
        close = difflib.get_close_matches(base, names, n=3, cutoff=0.75)
        if self.stripped and self.debug_file() is None:
            dyn = "no symbols at all" if not names else f"only its {len(names)} exported functions (.dynsym)"
            msg = (f"{self.path}: no function {name!r}: the binary is stripped (no .symtab; {dyn}) "
                   f"and no debug file is installed")
        else:
            msg = f"{self.path}: no function {name!r} in its symbol tables"
        if close:
            msg += "; did you mean " + ", ".join(close) + "?"
        return msg

    def close(self) -> None:
        self.data = np.zeros(0, np.uint8)
        try:
            self._map.close()
        except (BufferError, ValueError):
            pass  # a numpy view still holds the buffer; the mapping goes with it

    def __enter__(self) -> "ElfFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = {ET_EXEC: "executable", ET_DYN: "PIE/shared object"}.get(self.type, f"type {self.type}")
        return f"<ElfFile {self.path} {'64' if self.is64 else '32'}-bit {kind}>"


def _preference(s: ElfSymbol) -> tuple[int, int, int, int, str]:
    """Which of several names of one address to show: global, default version,
    fewer leading underscores, shorter."""
    return (0 if s.binding in ("global", "weak") else 1, 1 if s.hidden else 0,
            len(s.name) - len(s.name.lstrip("_")), len(s.name), s.name)


def _cstr(table: bytes, offset: int) -> str:
    if offset >= len(table):
        return ""
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", "surrogateescape")


_cache: dict[tuple[str, int, int], ElfFile] = {}


def load_symbols(path: str) -> ElfFile:
    """An :class:`ElfFile`, cached by path, size and mtime (a rebuilt binary is read again)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ElfFormatError(f"{path}: {e.strerror.lower() if e.strerror else e}") from None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    elf = _cache.get(key)
    if elf is None:
        elf = ElfFile(path)
        if len(_cache) > 32:
            _cache.clear()
        _cache[key] = elf
    return elf


def describe(symbols: Iterable[ElfSymbol]) -> str:
    """A readable table of symbols (for debugging and ``--list``)."""
    rows = [f"{'OFFSET':>12} {'SIZE':>8} {'KIND':<6} NAME"]
    for s in symbols:
        off = f"{s.offset:#x}" if s.offset is not None else "-"
        rows.append(f"{off:>12} {s.size:>8} {s.kind:<6} {s.versioned_name}")
    return "\n".join(rows)
