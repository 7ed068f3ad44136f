"""The event renderers that ``trace-cmd report`` takes from its plugins.

trace-cmd does not print every event with the kernel's ``print fmt``: the
libtraceevent plugins it loads by default register a handler per event that writes the event text
instead.  A handler either replaces the text (``sched_switch`` prints
``bash:9084 [120] S ==> bash:9090 [120]``) or writes a prefix and lets the
default print fmt text follow (kmem's ``(copy_process+0x18a) call_site=...``).

:func:`plugin_renderer` returns that handler for the events that have one;
:func:`make_renderer` picks the plugin or the generic print fmt renderer.

Covered (the handlers trace-cmd 3.1.6 with libtraceevent 1.7 uses for the
events they name): sched_switch, sched_wakeup, sched_wakeup_new (sched plugin),
kfree, kmalloc, kmalloc_node, kmem_cache_alloc, kmem_cache_alloc_node,
kmem_cache_free (kmem plugin), hrtimer_start, hrtimer_expire_entry (hrtimer
plugin), ftrace function, raw_data and kernel_stack (function plugin).  Not covered yet: funcgraph_entry/exit (they look
ahead at the next record), func_repeats, and the jbd2, kvm, mac80211, cfg80211,
scsi, xen, tlb and futex plugins; those events fall back to the print fmt.

Values are read the way libtraceevent reads them: ``tep_read_number`` gives
the field as an unsigned number of its size, and the handlers' ``%lld`` /
``%d`` conversions then reinterpret it.
"""

from __future__ import annotations

from typing import Callable, Protocol

from .event_format import EventFormat, Field
from .symbols import TraceSymbols

__all__ = [
    "EventText",
    "PluginRenderer",
    "EventRenderer",
    "plugin_renderer",
    "make_renderer",
    "find_function",
    "PLUGIN_EVENTS",
    "CommTeacher",
    "comm_teacher",
]

#: Produces the generic print fmt text of the record being rendered.
EventText = Callable[[], str]
#: ``render(payload, symbols, default_text) -> str``: the text after the event name.
PluginRenderer = Callable[[bytes, TraceSymbols, EventText], str]


class EventRenderer(Protocol):
    """Renders one event type's records as the text after the event name.

    ``cpu``: the record's CPU (-1 unknown); the function plugin's indentation
    depends on it and on the records before (render them in report order)."""

    def render(self, payload: bytes, symbols: TraceSymbols, cpu: int = -1) -> str: ...


# ---------------------------------------------------------------------------
# helpers shared by the handlers (libtraceevent semantics)


def find_function(symbols: TraceSymbols, addr: int) -> tuple[str, int] | None:
    """The kernel function ``addr`` falls in, as libtraceevent's ``find_func`` decides:
    ``(name, start address)`` or None (``KernelSymbols.lookup`` holds the rules)."""
    hit = symbols.kallsyms.lookup(addr)
    return None if hit is None else (hit[0], hit[2])


def _read_unsigned(payload: bytes, f: Field, little: bool = True) -> int:
    """``tep_read_number_field``: the field as an unsigned number of its size."""
    if f.size not in (1, 2, 4, 8):
        return 0
    return int.from_bytes(payload[f.offset : f.offset + f.size], "little" if little else "big")


def _as_int32(value: int) -> int:
    """C's ``(int) val``."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _comm_text(payload: bytes, f: Field) -> str:
    """``"%.*s", field->size, comm``: the array up to its first NUL."""
    raw = payload[f.offset : f.offset + f.size]
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "surrogateescape")


def _register_comm(symbols: TraceSymbols, comm: str, pid: int) -> None:
    """``tep_register_comm``: the sched plugin teaches the pid -> comm table.

    Later report lines of that pid then show this comm in their first column.
    An existing entry is kept (no override), and pid 0 is always ``<idle>``.
    """
    if pid:
        symbols.cmdlines.by_pid.setdefault(pid, comm)


def _missing_field(name: str) -> str:
    """What ``tep_get_field_val(..., err=1)`` writes for a missing field."""
    return f"<CANT FIND FIELD {name}>"


# ---------------------------------------------------------------------------
# sched plugin

# Bit i of prev_state prints letter i.  libtraceevent 1.7 (trace-cmd 3.1.6's) has this
# fixed list; 1.8 takes the letters from the print fmt's __print_flags instead
# ("SDTtXZPI" on current kernels), so the two disagree for X, Z and I.
_TASK_STATE_LETTERS = "SDTtZXxW"


def _task_state(value: int) -> str:
    """``write_state``: the letters of the set bits joined by ``|``, ``R`` for none."""
    letters = [c for i, c in enumerate(_TASK_STATE_LETTERS) if value & (1 << i)]
    return "|".join(letters) if letters else "R"


def _sched_switch(fmt: EventFormat) -> PluginRenderer:
    prev_pid = fmt.field("prev_pid")
    prev_comm = fmt.field("prev_comm")
    prev_prio = fmt.field("prev_prio")
    prev_state = fmt.field("prev_state")
    next_pid = fmt.field("next_pid")
    next_comm = fmt.field("next_comm")
    next_prio = fmt.field("next_prio")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        if prev_pid is None:
            return _missing_field("prev_pid") + "!"
        out = []
        pid = _read_unsigned(payload, prev_pid, little)
        if prev_comm is not None:
            comm = _comm_text(payload, prev_comm)
            _register_comm(symbols, comm, pid)
            out.append(comm + ":")
        out.append(f"{pid} ")
        if prev_prio is not None:
            out.append(f"[{_as_int32(_read_unsigned(payload, prev_prio, little))}] ")
        if prev_state is not None:
            out.append(_task_state(_as_int32(_read_unsigned(payload, prev_state, little))))
        else:
            out.append(_missing_field("prev_state"))
        out.append(" ==> ")
        if next_pid is None:
            return "".join(out) + _missing_field("next_pid") + "!"
        pid = _read_unsigned(payload, next_pid, little)
        if next_comm is not None:
            comm = _comm_text(payload, next_comm)
            _register_comm(symbols, comm, pid)
            out.append(comm + ":")
        out.append(str(pid))
        if next_prio is not None:
            out.append(f" [{_as_int32(_read_unsigned(payload, next_prio, little))}]")
        return "".join(out)

    return render


def _sched_wakeup(fmt: EventFormat) -> PluginRenderer:
    """sched_wakeup and sched_wakeup_new: ``comm:pid [prio] CPU:001``."""
    pid_f = fmt.field("pid")
    comm_f = fmt.field("comm")
    prio_f = fmt.field("prio")
    success_f = fmt.field("success")
    target_f = fmt.field("target_cpu")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        if pid_f is None:
            return _missing_field("pid") + "!"
        pid = _read_unsigned(payload, pid_f, little)
        out = []
        if comm_f is not None:
            comm = _comm_text(payload, comm_f)
            _register_comm(symbols, comm, pid)
            out.append(comm + ":")
        out.append(str(pid))
        if prio_f is not None:
            out.append(f" [{_read_unsigned(payload, prio_f, little)}]")
        if success_f is not None:
            out.append(f" success={_read_unsigned(payload, success_f, little)}")
        if target_f is not None:
            out.append(f" CPU:{_read_unsigned(payload, target_f, little):03d}")
        return "".join(out)

    return render


# ---------------------------------------------------------------------------
# kmem plugin


def _kmem_call_site(fmt: EventFormat) -> PluginRenderer | None:
    """``(func+0xoff) `` before the print fmt text, when call_site resolves."""
    call_site = fmt.field("call_site")
    if call_site is None or call_site.name.startswith("common_"):
        return None

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        addr = _read_unsigned(payload, call_site, symbols.little_endian)
        func = find_function(symbols, addr)
        if func is None:
            return default_text()
        name, start = func
        # "%x" of (int)(val - addr): the low 32 bits in hex
        return f"({name}+0x{(addr - start) & 0xFFFFFFFF:x}) " + default_text()

    return render


# ---------------------------------------------------------------------------
# hrtimer plugin


def _function_with_offset(symbols: TraceSymbols, addr: int) -> str:
    """``tep_print_func_field``'s text: ``name/0x<start - addr>`` or ``0x%08llx``.

    The offset is start minus address as an unsigned 64-bit number, as libtraceevent
    computes it (so it is 0x0 for the exact start and wraps for later addresses).
    """
    func = find_function(symbols, addr)
    if func is None:
        return f"0x{addr:08x}"
    name, start = func
    return f"{name}/0x{(start - addr) & 0xFFFFFFFFFFFFFFFF:x}"


def _timer_field(fmt: EventFormat) -> tuple[Field | None, str]:
    """Older kernels call the hrtimer pointer ``timer``, newer ones ``hrtimer``."""
    f = fmt.field("timer")
    if f is not None:
        return f, "timer"
    return fmt.field("hrtimer"), "hrtimer"


def _num_text(payload: bytes, f: Field | None, name: str, little: bool, hex_: bool) -> str:
    if f is None:
        return f'CAN\'T FIND FIELD "{name}"'
    value = _read_unsigned(payload, f, little)
    return f"0x{value:x}" if hex_ else str(value)


def _hrtimer_expire_entry(fmt: EventFormat) -> PluginRenderer:
    timer, timer_name = _timer_field(fmt)
    now = fmt.field("now")
    function = fmt.field("function")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        out = ["hrtimer=", _num_text(payload, timer, timer_name, little, True)]
        out += [" now=", _num_text(payload, now, "now", little, False)]
        if function is not None:
            out.append(" function=" + _function_with_offset(symbols, _read_unsigned(payload, function, little)))
        return "".join(out)

    return render


def _hrtimer_start(fmt: EventFormat) -> PluginRenderer:
    timer, timer_name = _timer_field(fmt)
    function = fmt.field("function")
    expires = fmt.field("expires")
    softexpires = fmt.field("softexpires")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        out = ["hrtimer=", _num_text(payload, timer, timer_name, little, True)]
        if function is not None:
            out.append(" function=" + _function_with_offset(symbols, _read_unsigned(payload, function, little)))
        out += [" expires=", _num_text(payload, expires, "expires", little, False)]
        out += [" softexpires=", _num_text(payload, softexpires, "softexpires", little, False)]
        return "".join(out)

    return render


# ---------------------------------------------------------------------------
# function plugin (ftrace events) and trace-cmd's own ftrace:function handler


def _raw_data(fmt: EventFormat) -> PluginRenderer:
    """trace_marker_raw records: ``# <id hex>`` then every payload byte in hex.

    The payload is the whole record as the ring buffer stores it, so the padding
    up to 4 bytes shows (stale memory, e.g. ``# 1001 01 55 00 00``).
    """
    id_f = fmt.field("id")
    buf_f = fmt.field("buf")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        if id_f is None:
            return _missing_field("id") + "!"
        out = [f"# {_read_unsigned(payload, id_f, symbols.little_endian):x}"]
        if buf_f is None:
            return out[0] + "<CANT FIND FIELD buf>"
        # libtraceevent steps by the trace's long size but prints up to a host long
        # (8 bytes) per step; for 8-byte longs that is simply every byte
        step = symbols.long_size or 8
        pos, end = buf_f.offset, len(payload)
        while pos < end:
            out.extend(f" {b:02x}" for b in payload[pos : min(pos + 8, end)])
            pos += step
        return "".join(out)

    return render


def _kernel_stack(fmt: EventFormat) -> PluginRenderer:
    caller = next((f for f in fmt.fields if f.name == "caller"), None)

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        if caller is None:
            return "<CANT FIND FIELD caller>"
        little = symbols.little_endian
        long_size = symbols.long_size or 8
        out = ["<stack trace >\n"]
        for pos in range(caller.offset, len(payload), long_size):
            addr = int.from_bytes(payload[pos : pos + long_size], "little" if little else "big")
            if (long_size == 8 and addr == 0xFFFFFFFFFFFFFFFF) or (addr & 0xFFFFFFFF) == 0xFFFFFFFF:
                break
            func = find_function(symbols, addr)
            if func is not None:
                out.append(f"=> {func[0]} ({addr:x})\n")
            else:
                out.append(f"=> {addr:x}\n")
        return "".join(out)

    return render


class _FunctionPlugin:
    """ftrace:function as the function plugin prints it: the function's name, indented.

    trace-cmd registers its own handler (``func <-- parent``) first, then loads the
    plugins, whose handler for the same event is the one libtraceevent keeps (its
    pending handlers are searched newest first).  The plugin keeps, per CPU, a list
    of the functions it has seen called from each other (add_and_get_index): a
    record whose parent is at position i of that list is indented by 3*i spaces and
    becomes entry i+1; an unknown parent restarts the list at (parent, function)
    while deeper entries stay.  The lists live as long as the report (the plugin's
    are process globals), so records must be rendered in report order, with their
    CPU.  Its options ``parent`` and ``offset`` are off, ``indent`` on, by default.
    """

    wants_cpu = True
    _BLOCK = 10  # STK_BLK: the list grows by this many empty entries

    def __init__(self, fmt: EventFormat) -> None:
        self.ip = fmt.field("ip")
        self.parent_ip = fmt.field("parent_ip")
        self.stacks: dict[int, list[str | None]] = {}

    def _add_child(self, stack: list[str | None], child: str | None, pos: int) -> None:
        if child is None:
            return
        if pos >= len(stack):
            stack.extend([None] * self._BLOCK)
        stack[pos] = child

    def _indent_index(self, parent: str, child: str | None, cpu: int) -> int:
        """add_and_get_index: where ``parent`` is in this CPU's list (0 when it is not)."""
        if cpu < 0:
            return 0
        stack = self.stacks.setdefault(cpu, [])
        for i, name in enumerate(stack):
            if name is None:
                break
            if name == parent:
                self._add_child(stack, child, i + 1)
                return i
        self._add_child(stack, parent, 0)
        self._add_child(stack, child, 1)
        return 0

    def __call__(self, payload: bytes, symbols: TraceSymbols, default_text: EventText, cpu: int = -1) -> str:
        little = symbols.little_endian
        if self.ip is None:
            return _missing_field("ip") + "!"
        addr = _read_unsigned(payload, self.ip, little)
        func = find_function(symbols, addr)
        if self.parent_ip is None:
            return _missing_field("parent_ip") + "!"
        parent = find_function(symbols, _read_unsigned(payload, self.parent_ip, little))
        index = self._indent_index(parent[0], func[0] if func else None, cpu) if parent else 0
        return " " * (3 * index) + (func[0] if func else f"0x{addr:x}")


_KMEM_CALL_SITE_EVENTS = ("kfree", "kmalloc", "kmalloc_node", "kmem_cache_alloc", "kmem_cache_alloc_node",
                          "kmem_cache_free")

#: (system, event name) -> factory of the handler trace-cmd registers for it.
PLUGIN_EVENTS: dict[tuple[str, str], Callable[[EventFormat], PluginRenderer | None]] = {
    ("sched", "sched_switch"): _sched_switch,
    ("sched", "sched_wakeup"): _sched_wakeup,
    ("sched", "sched_wakeup_new"): _sched_wakeup,
    **{("kmem", name): _kmem_call_site for name in _KMEM_CALL_SITE_EVENTS},
    ("timer", "hrtimer_expire_entry"): _hrtimer_expire_entry,
    ("timer", "hrtimer_start"): _hrtimer_start,
    ("ftrace", "raw_data"): _raw_data,
    ("ftrace", "kernel_stack"): _kernel_stack,
    ("ftrace", "function"): _FunctionPlugin,
}


def plugin_renderer(fmt: EventFormat) -> PluginRenderer | None:
    """The trace-cmd plugin rendering of ``fmt``'s records, or None when it has none.

    The renderer is called as ``render(payload, symbols, default_text)``; the
    ones that only add a prefix call ``default_text()`` for the print fmt text.
    The sched handlers add pid -> comm entries to ``symbols.cmdlines`` as
    trace-cmd's do; give them a copy if the table must stay unchanged.
    """
    factory = PLUGIN_EVENTS.get((fmt.system, fmt.name))
    return factory(fmt) if factory is not None else None


# ---------------------------------------------------------------------------


def _print_fmt_renderer(fmt: EventFormat):
    """The generic renderer (formats/printfmt/), imported late: it is a sibling package."""
    from .printfmt import PrintFormat  # noqa: PLC0415

    return PrintFormat.parse(fmt)


class _PrintFmtEventRenderer:
    """An event without a plugin: the print fmt text."""

    def __init__(self, fmt: EventFormat):
        self._print_fmt = _print_fmt_renderer(fmt)

    def render(self, payload: bytes, symbols: TraceSymbols, cpu: int = -1) -> str:
        return self._print_fmt.render(payload, symbols)

    def batch_plan(self, symbols: TraceSymbols):
        """The print fmt's :class:`~.print_fmt.PrintFormatBatch`: many records at once."""
        return self._print_fmt.batch_plan(symbols)


class _PluginEventRenderer:
    """An event with a plugin; the print fmt is built only if the plugin asks for it."""

    def __init__(self, fmt: EventFormat, plugin: PluginRenderer):
        self._fmt = fmt
        self._plugin = plugin
        self._print_fmt = None

    def _default_text(self, payload: bytes, symbols: TraceSymbols) -> str:
        if self._print_fmt is None:
            self._print_fmt = _print_fmt_renderer(self._fmt)
        return self._print_fmt.render(payload, symbols)

    def render(self, payload: bytes, symbols: TraceSymbols, cpu: int = -1) -> str:
        default_text = lambda: self._default_text(payload, symbols)  # noqa: E731
        if getattr(self._plugin, "wants_cpu", False):
            return self._plugin(payload, symbols, default_text, cpu)  # type: ignore[call-arg]
        return self._plugin(payload, symbols, default_text)


class CommTeacher:
    """What a sched handler adds to the pid -> comm table for one record.

    ``teacher(payload, little)`` is the list of ``(pid, comm)`` pairs its handler
    passes to ``tep_register_comm``, in order; ``pid_fields`` the fields the pids
    come from (unsigned), so that records whose pids are all known can be
    skipped without decoding them.
    """

    def __init__(self, pairs: list[tuple[Field, Field]], pid_fields: list[Field]) -> None:
        self._pairs = pairs
        self.pid_fields = pid_fields

    def __call__(self, payload: bytes, little: bool) -> list[tuple[int, str]]:
        return [(_read_unsigned(payload, pid_f, little), _comm_text(payload, comm_f)) for pid_f, comm_f in self._pairs]


def comm_teacher(fmt: EventFormat) -> CommTeacher | None:
    """The comms the plugin of ``fmt`` teaches (sched_switch, sched_wakeup[_new]), or None."""
    factory = PLUGIN_EVENTS.get((fmt.system, fmt.name))
    if factory is _sched_switch:
        prev_pid, prev_comm = fmt.field("prev_pid"), fmt.field("prev_comm")
        next_pid, next_comm = fmt.field("next_pid"), fmt.field("next_comm")
        if prev_pid is None:  # the handler stops before registering anything
            return None
        pairs = []
        if prev_comm is not None:
            pairs.append((prev_pid, prev_comm))
        if next_pid is not None and next_comm is not None:
            pairs.append((next_pid, next_comm))
    elif factory is _sched_wakeup:
        pid_f, comm_f = fmt.field("pid"), fmt.field("comm")
        pairs = [(pid_f, comm_f)] if pid_f is not None and comm_f is not None else []
    else:
        return None
    if not pairs:
        return None
    return CommTeacher(pairs, [p for p, _ in pairs])


def make_renderer(fmt: EventFormat) -> EventRenderer:
    """The renderer ``trace-cmd report`` uses for ``fmt``: its plugin, else the print fmt."""
    plugin = plugin_renderer(fmt)
    if plugin is not None:
        return _PluginEventRenderer(fmt, plugin)
    return _PrintFmtEventRenderer(fmt)
