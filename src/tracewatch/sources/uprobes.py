"""Function probes by name: parse ``-P`` specs, resolve them to uprobes, install them.

A probe spec names a function and what to fetch when it is hit::

    libc:malloc(size=%di:u64)            entry of malloc in the libc, one argument
    libc:malloc(arg1:u64)                the same by calling convention (field "arg1")
    r:libc:malloc ret=$retval:x64        its return, with the return value
    /usr/bin/python3:_PyEval_EvalFrameDefault
    libc:open(path=+0(arg1):string)      a string argument
    ./prog:work_*                        every function of ./prog matching the glob
    p:libc:malloc+4                      four bytes into malloc
    k:vfs_read                           a kernel function (needs kprobes)

Grammar: ``[p:|r:|u:|k:][LIBRARY:]FUNCTION[+OFFSET][(ARG, ...)] [ARG ...]``;
an ARG is ``[NAME=]FETCH[:TYPE]`` in the kernel's fetcharg syntax
(``%di``, ``$retval``, ``+8(%si)``, ``$stack2``, ``@0x1234``, ``$comm``) where
``arg1``..``arg6`` stand for the registers of the x86_64 SysV calling
convention (``%di %si %dx %cx %r8 %r9``).  TYPE is one of the kernel's
(``u8..u64``, ``s8..s64``, ``x8..x64``, ``string``, ``ustring``, ``char``,
``symbol``, ``b<width>@<offset>/<size>``, ``TYPE[N]``); the default is ``u64``.

LIBRARY resolves like the dynamic linker would find it: a path is taken as
is; otherwise the target process's mappings (``/proc/PID/maps``, with a pid),
then ``ldconfig -p`` (``libc`` -> ``libc.so.6``), then the program being run
and ``$PATH``.  Without LIBRARY the function is in the target program (the
command after ``--``, or ``/proc/PID/exe``); with no target at all it is a
kernel function.

:class:`ProbeSet` holds the resolved probes; ``probe_set.install`` is the
``setup`` callable of :class:`~tracewatch.sources.session.LiveSession`: it
adds every uprobe to the session's instance (group ``tracewatch_<pid>_<n>``,
removed on every exit path, see :mod:`.tracefs`) and returns the event names
to enable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..errors import CaptureError, ProbeSpecError
from ..formats.elf_symbols import SymbolError, load_symbols

__all__ = [
    "ProbeSpec",
    "FetchArg",
    "ResolvedProbe",
    "ProbeSet",
    "ProbeSpecError",
    "parse_probe_spec",
    "resolve_library",
    "resolve_probes",
    "kernel_probes_available",
    "process_threads",
    "ARG_REGISTERS",
    "DEFAULT_MAX_PROBES",
    "RETURN_SUFFIX",
]

#: x86_64 SysV: the first six integer arguments
ARG_REGISTERS = ("di", "si", "dx", "cx", "r8", "r9")
#: wildcard patterns stop here unless told otherwise (each probe costs a kernel object)
DEFAULT_MAX_PROBES = 1000
#: the event name of a function's return probe: NAME__return (the kernel's kretprobe word)
RETURN_SUFFIX = "__return"
_MAX_EVENT_NAME = 63 - len(RETURN_SUFFIX) - 4  # kernel limit 64 with NUL, room for suffixes

_SCALAR_TYPES = {f"{k}{b}" for k in "usx" for b in (8, 16, 32, 64)}
_TYPES = _SCALAR_TYPES | {"string", "ustring", "char", "symbol", "symstr"}
_RESERVED_FIELDS = {"__probe_ip", "__probe_func", "__probe_ret_ip"}


# --------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class FetchArg:
    """One field the probe records: ``name=fetch:type`` in the kernel's syntax."""

    name: str
    fetch: str  # kernel fetcharg (argN already turned into %reg)
    type: str

    @property
    def kernel(self) -> str:
        return f"{self.name}={self.fetch}:{self.type}"


@dataclass(frozen=True)
class ProbeSpec:
    """A parsed ``-P`` spec (nothing resolved yet)."""

    text: str
    kind: str  # "p" (entry) or "r" (return)
    library: str | None  # as written; None: the target program (or the kernel)
    function: str  # a name, versioned name or glob
    offset: int = 0  # bytes into the function (entry probes)
    args: tuple[FetchArg, ...] = ()
    kernel: bool = False  # k:NAME

    @property
    def is_pattern(self) -> bool:
        return any(c in self.function for c in "*?[")

    @property
    def fetchargs(self) -> str:
        return " ".join(a.kernel for a in self.args)

    def with_kind(self, kind: str) -> "ProbeSpec":
        return ProbeSpec(self.text, kind, self.library, self.function, self.offset, self.args, self.kernel)


def _split_top(text: str, seps: str) -> list[str]:
    """Split at any of ``seps`` outside parentheses, brackets and quotes."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch in seps and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


_ARGN = re.compile(r"(?<![\w%$])\$?arg([1-9]\d*)\b")


def _translate_fetch(fetch: str, spec: str) -> str:
    def reg(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n > len(ARG_REGISTERS):
            raise ProbeSpecError(f"probe {spec!r}: arg{n}: only the first {len(ARG_REGISTERS)} arguments are in "
                                 f"registers on x86_64; later ones are on the stack (try $stack{n - 6 + 1})")
        return "%" + ARG_REGISTERS[n - 1]

    return _ARGN.sub(reg, fetch)


def _valid_type(t: str) -> bool:
    if t in _TYPES:
        return True
    if re.fullmatch(r"b\d+@\d+/\d+", t):
        return True
    m = re.fullmatch(r"(\w+)\[(\d+)\]", t)
    return bool(m and m.group(1) in _TYPES and m.group(1) not in ("string", "ustring"))


def _parse_arg(text: str, position: int, kind: str, spec: str, taken: set[str]) -> FetchArg:
    name = None
    m = re.match(r"([A-Za-z_]\w*)=(.*)$", text)
    if m:
        name, body = m.group(1), m.group(2)
    else:
        body = text
    # the type follows the last ':' outside parentheses
    typ = "u64"
    depth, cut = 0, -1
    for i, ch in enumerate(body):
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == ":" and depth == 0:
            cut = i
    if cut >= 0:
        body, typ = body[:cut], body[cut + 1 :]
        if not _valid_type(typ):
            raise ProbeSpecError(f"probe {spec!r}: unknown type {typ!r} in {text!r} "
                                 f"(u8..u64, s8..s64, x8..x64, string, char, symbol, TYPE[N])")
    if not body:
        raise ProbeSpecError(f"probe {spec!r}: argument {text!r} fetches nothing")
    if body in ("retval", "$retval"):
        body = "$retval"
        if kind != "r":
            raise ProbeSpecError(f"probe {spec!r}: $retval is only known at the return: use an r: probe "
                                 f"(r:{spec.split(':', 1)[-1] if spec.startswith(('p:', 'u:')) else spec})")
    fetch = _translate_fetch(body, spec)
    if not re.fullmatch(r"[%$@+\-\\\w().\"'\[\] ]+", fetch) or not fetch[0] in "%$@+-\\":
        raise ProbeSpecError(f"probe {spec!r}: cannot read {body!r}: use a register (%di, arg1..arg6), "
                             f"$retval, $stackN, $comm, @ADDR or +OFF(FETCH)")
    if name is None:
        lone = re.fullmatch(r"\$?(arg\d)", body)
        name = lone.group(1) if lone else ("ret" if body == "$retval" else f"arg{position}")
        while name in taken:
            name = f"{name}_"
    if name.startswith("common_") or name in _RESERVED_FIELDS:
        raise ProbeSpecError(f"probe {spec!r}: field name {name!r} is taken by the event's own fields")
    if name in taken:
        raise ProbeSpecError(f"probe {spec!r}: two arguments are named {name!r}")
    taken.add(name)
    return FetchArg(name, fetch, typ)


def parse_probe_spec(text: str) -> ProbeSpec:
    """Parse one ``-P`` spec (see the module docstring for the grammar)."""
    spec = text.strip()
    if not spec:
        raise ProbeSpecError("empty probe spec")
    kind, kernel = "p", False
    rest = spec
    m = re.match(r"^(p|r|u|k|kr|kernel):", rest)
    if m:
        word = m.group(1)
        rest = rest[m.end():]
        if word == "r":
            kind = "r"
        elif word in ("k", "kernel"):
            kernel = True
        elif word == "kr":
            kernel, kind = True, "r"
    # the location ends at the first '(' or whitespace outside a path
    loc_end = len(rest)
    for i, ch in enumerate(rest):
        if ch == "(" or ch.isspace():
            loc_end = i
            break
    location, argtext = rest[:loc_end], rest[loc_end:].strip()
    arg_parts: list[str] = []
    if argtext.startswith("("):
        depth, close = 0, -1
        for i, ch in enumerate(argtext):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                close = i
                break
        if close < 0:
            raise ProbeSpecError(f"probe {spec!r}: '(' without its ')'")
        arg_parts += _split_top(argtext[1:close], ",")
        argtext = argtext[close + 1 :].strip()
    arg_parts += _split_top(argtext, " \t")
    if ":" in location and not kernel:
        library, _, function = location.rpartition(":")
    else:
        library, function = None, location
    if library == "":
        raise ProbeSpecError(f"probe {spec!r}: empty library name before ':'")
    offset = 0
    om = re.fullmatch(r"(.+?)\+(0x[0-9a-fA-F]+|\d+)", function)
    if om:
        function, offset = om.group(1), int(om.group(2), 0)
        if kind == "r":
            raise ProbeSpecError(f"probe {spec!r}: a return probe is at the function's return; it takes no +OFFSET")
    if not function:
        raise ProbeSpecError(f"probe {spec!r}: no function name")
    if not re.fullmatch(r"[\w.$@*?\[\]!-]+", function):
        raise ProbeSpecError(f"probe {spec!r}: {function!r} is not a function name or glob")
    taken: set[str] = set()
    args = tuple(_parse_arg(a, i, kind, spec, taken) for i, a in enumerate(arg_parts, 1))
    return ProbeSpec(spec, kind, library, function, offset, args, kernel)


# --------------------------------------------------------------------------- libraries

def _ldconfig_entries() -> list[tuple[str, str, str]]:
    """(soname, flags, path) from ``ldconfig -p``; empty where ldconfig is missing."""
    exe = shutil.which("ldconfig") or next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig")
                                            if os.path.exists(p)), None)
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    entries = []
    for line in out.splitlines()[1:]:
        m = re.match(r"\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)", line)
        if m:
            entries.append((m.group(1), m.group(2), m.group(3)))
    return entries


def _lib_matches(soname: str, lib: str) -> bool:
    """``libc`` / ``c`` / ``libc.so`` / ``libc.so.6`` all name ``libc.so.6``; ``libpython3.11`` names
    ``libpython3.11.so.1.0``."""
    for cand in (lib, "lib" + lib):
        if soname == cand or soname.startswith(cand + ".so") or soname.startswith(cand + "-") and ".so" in soname:
            return True
    return False


def _maps_paths(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise CaptureError(f"no process {pid}") from None
    except OSError as e:
        raise CaptureError(f"cannot read /proc/{pid}/maps: {e.strerror}") from None
    out: list[str] = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/") and parts[5] not in out:
            out.append(parts[5].removesuffix(" (deleted)"))
    return out


def _host_path(pid: int | None, path: str) -> str:
    """A path as seen from the process's mount namespace, reachable from ours."""
    if pid is None or os.path.exists(path):
        return path
    alt = f"/proc/{pid}/root{path}"
    return alt if os.path.exists(alt) else path


def resolve_library(lib: str, *, pid: int | None = None, program: str | None = None) -> str:
    """The file ``lib`` names (see the module docstring); raises :class:`ProbeSpecError`."""
    if "/" in lib:
        path = os.path.abspath(os.path.expanduser(lib))
        if not os.path.exists(path):
            raise ProbeSpecError(f"no such library or program: {lib}")
        return os.path.realpath(path)
    base = os.path.basename
    searched = []
    if pid is not None:
        searched.append(f"/proc/{pid}/maps")
        paths = _maps_paths(pid)
        for p in paths:
            if base(p) == lib or _lib_matches(base(p), lib):
                return _host_path(pid, p)
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            if base(exe) == lib or base(exe).startswith(lib):
                return _host_path(pid, exe)
        except OSError:
            pass
    if program is not None and (base(program) == lib or base(os.path.realpath(program)) == lib):
        return os.path.realpath(program)
    searched.append("ldconfig -p")
    entries = _ldconfig_entries()
    wide = "x86-64" if os.uname().machine == "x86_64" else ""
    hits = [e for e in entries if _lib_matches(e[0], lib)]
    if hits:
        hits.sort(key=lambda e: (0 if wide and wide in e[1] else 1, 0 if e[0].startswith(lib + ".so") or
                                 e[0].startswith("lib" + lib + ".so") else 1, len(e[0])))
        return os.path.realpath(hits[0][2])
    searched.append("$PATH")
    exe = shutil.which(lib)
    if exe:
        return os.path.realpath(exe)
    raise ProbeSpecError(f"cannot find library {lib!r} (searched {', '.join(searched)}); give its path")


def kernel_probes_available(tracefs_path: str = "/sys/kernel/tracing") -> bool:
    """Whether this kernel can probe kernel functions (a ``kprobe_events`` file)."""
    return os.path.exists(os.path.join(tracefs_path, "kprobe_events"))


def process_threads(pid: int) -> list[int]:
    """Every thread id of process ``pid`` (``set_event_pid`` matches threads, not processes)."""
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit())
    except FileNotFoundError:
        raise CaptureError(f"no process {pid}") from None
    except OSError as e:
        raise CaptureError(f"cannot list the threads of {pid}: {e.strerror}") from None
    return tids or [pid]


# --------------------------------------------------------------------------- resolution

@dataclass(frozen=True)
class ResolvedProbe:
    """A spec resolved to one uprobe: file, offset, event name, fetchargs."""

    spec: ProbeSpec
    path: str
    function: str  # the symbol's name (malloc)
    offset: int  # file offset of the probe
    event: str  # event name in the group (sanitised, unique)
    kind: str  # "p" or "r"
    symbol: str = ""  # with its version where it has one (malloc@@GLIBC_2.2.5)

    @property
    def location(self) -> str:
        return f"{self.path}:{self.offset:#x}"

    @property
    def fetchargs(self) -> str:
        return self.spec.fetchargs

    def definition(self, group: str) -> str:
        """The ``uprobe_events`` line this probe becomes."""
        return f"{self.kind}:{group}/{self.event} {self.location} {self.fetchargs}".rstrip()


def event_name_for(function: str) -> str:
    """A kernel event name for a function name: letters, digits and ``_``, at most ~40 chars."""
    base = function.split("@", 1)[0]
    name = re.sub(r"\W", "_", base)
    if not name or name[0].isdigit():
        name = "f_" + name
    return name[:_MAX_EVENT_NAME]


def function_of_event(event: str) -> tuple[str, str]:
    """(function, kind) from an event name: ``malloc__return`` -> ("malloc", "r")."""
    if event.endswith(RETURN_SUFFIX):
        return event[: -len(RETURN_SUFFIX)], "r"
    return event, "p"


def resolve_probes(specs: Iterable[ProbeSpec | str], *, pid: int | None = None, program: str | None = None,
                   max_probes: int = DEFAULT_MAX_PROBES, tracefs_path: str = "/sys/kernel/tracing"
                   ) -> list[ResolvedProbe]:
    """Resolve specs to uprobes (names unique across the result).

    ``pid``: the traced process (library lookup in its maps, default
    program ``/proc/PID/exe``); ``program``: the command being run (default
    program).  A glob over more than ``max_probes`` functions is refused.
    """
    out: list[ResolvedProbe] = []
    names: set[str] = set()
    seen: set[tuple[str, int, str]] = set()
    for spec in specs:
        if isinstance(spec, str):
            spec = parse_probe_spec(spec)
        path = _spec_path(spec, pid=pid, program=program, tracefs_path=tracefs_path)
        try:
            elf = load_symbols(path)
        except SymbolError:
            raise
        except CaptureError as e:
            raise ProbeSpecError(str(e)) from None
        if spec.is_pattern:
            syms = elf.functions(spec.function)
            if not syms:
                raise SymbolError(f"{path}: no function matches {spec.function!r}"
                                  + (" (the binary is stripped: only exported functions are visible)"
                                     if elf.stripped and elf.debug_file() is None else ""))
        else:
            syms = [elf.function(spec.function)]
        if len(out) + len(syms) > max_probes:
            raise ProbeSpecError(f"probe {spec.text!r} matches {len(syms)} functions; with the others that is "
                                 f"more than the limit of {max_probes} probes: narrow the pattern "
                                 f"or raise --max-probes")
        for sym in syms:
            assert sym.offset is not None
            off = sym.offset + spec.offset
            if spec.offset and sym.size and spec.offset >= sym.size:
                raise ProbeSpecError(f"probe {spec.text!r}: offset {spec.offset:#x} is past the end of "
                                     f"{sym.name} ({sym.size} bytes)")
            key = (path, off, spec.kind)
            if key in seen:
                continue  # the same place twice (aliases, overlapping globs): one probe
            seen.add(key)
            base = event_name_for(sym.name)
            if spec.offset:
                base = f"{base}_{spec.offset:x}"[:_MAX_EVENT_NAME + 4]
            name = base + (RETURN_SUFFIX if spec.kind == "r" else "")
            n = 2
            while name in names:
                name = f"{base}_{n}" + (RETURN_SUFFIX if spec.kind == "r" else "")
                n += 1
            names.add(name)
            out.append(ResolvedProbe(spec, path, sym.name, off, name, spec.kind, sym.versioned_name))
    return out


def _spec_path(spec: ProbeSpec, *, pid: int | None, program: str | None, tracefs_path: str) -> str:
    if spec.kernel or (spec.library is None and pid is None and program is None):
        where = "" if spec.kernel else (f"; for a user function name its library or program "
                                         f"(libc:{spec.function}, ./prog:{spec.function}) or give -p PID / -- COMMAND")
        if not kernel_probes_available(tracefs_path):
            raise ProbeSpecError(f"kernel function tracing is unavailable here: this kernel has no kprobes "
                                 f"(no kprobe_events in tracefs){where}")
        raise ProbeSpecError(f"kernel function probes ({spec.function}) are not supported by tracewatch yet{where}")
    if spec.library is not None:
        return resolve_library(spec.library, pid=pid, program=program)
    if program is not None:
        return os.path.realpath(program)
    assert pid is not None
    try:
        return _host_path(pid, os.readlink(f"/proc/{pid}/exe"))
    except FileNotFoundError:
        raise CaptureError(f"no process {pid}") from None
    except OSError as e:
        raise CaptureError(f"cannot read /proc/{pid}/exe: {e.strerror}") from None


# --------------------------------------------------------------------------- installation

@dataclass
class ProbeSet:
    """Resolved probes and, once installed, the events they became.

    ::

        probes = ProbeSet.from_specs(["libc:malloc(size=arg1)"], pid=1234)
        with LiveSession([], pids=[1234], setup=probes.install) as s:
            ...
        probes.probe_for("tracewatch_99_0", "malloc")   # -> ResolvedProbe
    """

    probes: list[ResolvedProbe]
    group: str | None = None
    events: list[str] = field(default_factory=list)  # group:event, once installed

    @classmethod
    def from_specs(cls, specs: Sequence[ProbeSpec | str], *, pid: int | None = None, program: str | None = None,
                   max_probes: int = DEFAULT_MAX_PROBES, both: bool = False) -> "ProbeSet":
        """Resolve ``specs``; with ``both``, each entry spec gets its return probe too
        (for durations and call trees)."""
        parsed = [parse_probe_spec(s) if isinstance(s, str) else s for s in specs]
        if both:
            paired: list[ProbeSpec] = []
            for s in parsed:
                paired.append(s)
                if s.kind == "p" and not s.offset:
                    # the entry's arguments mean nothing at the return: the return probe fetches nothing
                    paired.append(ProbeSpec(s.text, "r", s.library, s.function, 0, (), s.kernel))
            parsed = paired
        return cls(resolve_probes(parsed, pid=pid, program=program,
                                  max_probes=max_probes * (2 if both else 1)))

    def install(self, instance) -> list[str]:  # noqa: ANN001 (an Instance)
        """Add every probe to ``instance`` (its uprobe group); return ``group:event`` names.

        This is the ``setup`` of a LiveSession.  The definitions go to the
        kernel many per write (:meth:`~.tracefs.Instance.add_uprobes`).  If the
        kernel rejects one, the ones already added are removed with the
        instance (on close).
        """
        self.group = instance.uprobe_group
        self.events = []
        self.events = instance.add_uprobes((p.event, p.location, p.fetchargs, p.kind == "r") for p in self.probes)
        return list(self.events)

    def probe_for(self, system: str, event: str) -> ResolvedProbe | None:
        if system != self.group:
            return None
        for p in self.probes:
            if p.event == event:
                return p
        return None

    @property
    def functions(self) -> list[str]:
        """The distinct functions probed, in order."""
        seen: dict[str, None] = {}
        for p in self.probes:
            seen.setdefault(p.function, None)
        return list(seen)

    def describe(self) -> str:
        n = len(self.functions)
        files = sorted({os.path.basename(p.path) for p in self.probes})
        return f"{n} function{'s' if n != 1 else ''} in {', '.join(files)}"
