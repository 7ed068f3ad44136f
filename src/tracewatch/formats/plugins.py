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
plugin), ftrace function, raw_data and kernel_stack (function plugin), kvm_exit,
kvm_entry, kvm_emulate_insn, kvm_nested_vmexit[_inject] and the kvmmmu page events
(kvm plugin), tlb_flush (tlb plugin), sys_enter_futex (futex plugin).  Not covered yet:
funcgraph_entry/exit (they look ahead at the next record), func_repeats (it prints the
time of the first repeat: the renderers are not given the record's time), and the jbd2,
mac80211, cfg80211, scsi and xen plugins; those events fall back to the print fmt.

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


def _field_val(payload: bytes, f: Field | None, name: str, little: bool) -> tuple[int | None, str]:
    """``tep_get_field_val(..., err=1)``: (the field as an unsigned number, "") or, when the
    field is missing or not 1, 2, 4 or 8 bytes, (None, what libtraceevent writes then)."""
    if f is None:
        return None, _missing_field(name)
    if f.size not in (1, 2, 4, 8):
        return None, f" {name}=INVALID"
    return _read_unsigned(payload, f, little), ""


def _num_field_text(payload: bytes, f: Field | None, name: str, little: bool, render: Callable[[int], str]) -> str:
    """``tep_print_num_field(s, fmt, ..., err=1)``: ``render(value)``, or its own error text."""
    if f is None or f.size not in (1, 2, 4, 8):
        return f'CAN\'T FIND FIELD "{name}"'
    return render(_read_unsigned(payload, f, little))


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


# ---------------------------------------------------------------------------
# kvm plugin (kvm_exit, kvm_entry, kvm_emulate_insn, kvm_nested_vmexit[_inject], kvmmmu)

# exit reason numbers -> the names the kvm plugin prints (VMX for isa 1, SVM for isa 2)
_VMX_EXIT_REASONS = {
    0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 7: "PENDING_INTERRUPT", 8: "NMI_WINDOW", 9:
    "TASK_SWITCH", 10: "CPUID", 12: "HLT", 13: "INVD", 14: "INVLPG", 15: "RDPMC", 16: "RDTSC", 18: "VMCALL", 19:
    "VMCLEAR", 20: "VMLAUNCH", 21: "VMPTRLD", 22: "VMPTRST", 23: "VMREAD", 24: "VMRESUME", 25: "VMWRITE", 26:
    "VMOFF", 27: "VMON", 28: "CR_ACCESS", 29: "DR_ACCESS", 30: "IO_INSTRUCTION", 31: "MSR_READ", 32:
    "MSR_WRITE", 36: "MWAIT_INSTRUCTION", 39: "MONITOR_INSTRUCTION", 40: "PAUSE_INSTRUCTION", 41:
    "MCE_DURING_VMENTRY", 43: "TPR_BELOW_THRESHOLD", 44: "APIC_ACCESS", 45: "EOI_INDUCED", 48: "EPT_VIOLATION",
    49: "EPT_MISCONFIG", 50: "INVEPT", 52: "PREEMPTION_TIMER", 54: "WBINVD", 55: "XSETBV", 56: "APIC_WRITE", 58:
    "INVPCID", 62: "PML_FULL", 63: "XSAVES", 64: "XRSTORS",
}
_SVM_EXIT_REASONS = {
    0: "EXIT_READ_CR0", 3: "EXIT_READ_CR3", 4: "EXIT_READ_CR4", 8: "EXIT_READ_CR8", 16: "EXIT_WRITE_CR0", 19:
    "EXIT_WRITE_CR3", 20: "EXIT_WRITE_CR4", 24: "EXIT_WRITE_CR8", 32: "EXIT_READ_DR0", 33: "EXIT_READ_DR1", 34:
    "EXIT_READ_DR2", 35: "EXIT_READ_DR3", 36: "EXIT_READ_DR4", 37: "EXIT_READ_DR5", 38: "EXIT_READ_DR6", 39:
    "EXIT_READ_DR7", 48: "EXIT_WRITE_DR0", 49: "EXIT_WRITE_DR1", 50: "EXIT_WRITE_DR2", 51: "EXIT_WRITE_DR3", 52:
    "EXIT_WRITE_DR4", 53: "EXIT_WRITE_DR5", 54: "EXIT_WRITE_DR6", 55: "EXIT_WRITE_DR7", 64: "EXIT_EXCP_DE", 65:
    "EXIT_EXCP_DB", 67: "EXIT_EXCP_BP", 68: "EXIT_EXCP_OF", 69: "EXIT_EXCP_BR", 70: "EXIT_EXCP_UD", 71:
    "EXIT_EXCP_NM", 72: "EXIT_EXCP_DF", 74: "EXIT_EXCP_TS", 75: "EXIT_EXCP_NP", 76: "EXIT_EXCP_SS", 77:
    "EXIT_EXCP_GP", 78: "EXIT_EXCP_PF", 80: "EXIT_EXCP_MF", 81: "EXIT_EXCP_AC", 82: "EXIT_EXCP_MC", 83:
    "EXIT_EXCP_XF", 96: "EXIT_INTR", 97: "EXIT_NMI", 98: "EXIT_SMI", 99: "EXIT_INIT", 100: "EXIT_VINTR", 101:
    "EXIT_CR0_SEL_WRITE", 102: "EXIT_IDTR_READ", 103: "EXIT_GDTR_READ", 104: "EXIT_LDTR_READ", 105:
    "EXIT_TR_READ", 106: "EXIT_IDTR_WRITE", 107: "EXIT_GDTR_WRITE", 108: "EXIT_LDTR_WRITE", 109:
    "EXIT_TR_WRITE", 110: "EXIT_RDTSC", 111: "EXIT_RDPMC", 112: "EXIT_PUSHF", 113: "EXIT_POPF", 114:
    "EXIT_CPUID", 115: "EXIT_RSM", 116: "EXIT_IRET", 117: "EXIT_SWINT", 118: "EXIT_INVD", 119: "EXIT_PAUSE",
    120: "EXIT_HLT", 121: "EXIT_INVLPG", 122: "EXIT_INVLPGA", 123: "EXIT_IOIO", 124: "EXIT_MSR", 125:
    "EXIT_TASK_SWITCH", 126: "EXIT_FERR_FREEZE", 127: "EXIT_SHUTDOWN", 128: "EXIT_VMRUN", 129: "EXIT_VMMCALL",
    130: "EXIT_VMLOAD", 131: "EXIT_VMSAVE", 132: "EXIT_STGI", 133: "EXIT_CLGI", 134: "EXIT_SKINIT", 135:
    "EXIT_RDTSCP", 136: "EXIT_ICEBP", 137: "EXIT_WBINVD", 138: "EXIT_MONITOR", 139: "EXIT_MWAIT", 140:
    "EXIT_MWAIT_COND", 141: "EXIT_XSETBV", 1024: "EXIT_NPF", 1025: "EXIT_AVIC_INCOMPLETE_IPI", 1026:
    "EXIT_AVIC_UNACCELERATED_ACCESS", -1: "EXIT_ERR",
}


def _exit_reason(value: int, isa: int) -> str:
    """find_exit_reason: the name, ``UNKNOWN-ISA``, or ``UNKNOWN (n)`` (the value compared as a C int)."""
    table = {1: _VMX_EXIT_REASONS, 2: _SVM_EXIT_REASONS}.get(isa)
    if table is None:
        return "UNKNOWN-ISA"
    name = table.get(_as_int32(value))
    return name if name is not None else f"UNKNOWN ({value})"


def _kvm_exit(fmt: EventFormat) -> PluginRenderer:
    """``reason NAME rip 0x.. info 1 2``: the exit reason by name (the guest's functions
    are only known to trace-cmd with guest files, which it is not given here)."""
    reason_f, isa_f, rip_f = fmt.field("exit_reason"), fmt.field("isa"), fmt.field("guest_rip")
    info1_f, info2_f = fmt.field("info1"), fmt.field("info2")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        # a missing field makes the handler fail: libtraceevent then appends the print fmt text
        little = symbols.little_endian
        if reason_f is None:
            return _missing_field("exit_reason") + default_text()
        isa = _read_unsigned(payload, isa_f, little) if isa_f is not None else 1
        out = "reason " + _exit_reason(_read_unsigned(payload, reason_f, little), isa)
        if rip_f is None:
            return out + _missing_field("guest_rip") + default_text()
        out += f" rip 0x{_read_unsigned(payload, rip_f, little):x}"
        if info1_f is not None and info2_f is not None:
            out += f" info {_read_unsigned(payload, info1_f, little):x} {_read_unsigned(payload, info2_f, little):x}"
        return out

    return render


def _kvm_entry(fmt: EventFormat) -> PluginRenderer:
    """`` vcpu N rip 0x..`` (the leading space is the handler's)."""
    vcpu_f, rip_f = fmt.field("vcpu_id"), fmt.field("rip")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        # tep_print_num_field(" vcpu %u"): the value as a C unsigned int
        out = _num_field_text(payload, vcpu_f, "vcpu_id", little, lambda v: f" vcpu {v & 0xFFFFFFFF}")
        if rip_f is None:
            return out + _missing_field("rip") + default_text()
        return out + f" rip 0x{_read_unsigned(payload, rip_f, little):x}"

    return render


def _kvm_emulate_insn(fmt: EventFormat) -> PluginRenderer:
    """``CSBASE:RIP: 0f 01 d9`` (`` FAIL`` when it failed): the instruction's bytes in hex,
    as the plugin prints them when built without udis86 (trace-cmd 3.1.6 here)."""
    fields = [(name, fmt.field(name)) for name in ("rip", "csbase", "len", "flags", "failed")]
    insn_f = fmt.field("insn")
    # the plugin writes into one static buffer: an instruction of length 0 prints the previous one
    previous = [""]

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        values = {}
        for name, f in fields:
            value, error = _field_val(payload, f, name, little)
            if value is None:  # the handler fails: the print fmt text follows
                return error + default_text()
            values[name] = value
        if insn_f is None:
            return _missing_field("insn") + default_text()
        length = values["len"]
        if length:
            start = insn_f.data_span(payload, little)[0]
            # (past 15 bytes the plugin overflows its buffer: the bytes that follow are shown)
            code = payload[start : start + length].ljust(length, b"\0")
            previous[0] = " ".join(f"{b:02x}" for b in code)
        return (f"{values['csbase']:x}:{values['rip']:x}: {previous[0]}"
                + (" FAIL" if values["failed"] else ""))

    return render


def _kvm_nested_vmexit_inject(fmt: EventFormat, prefix_rip: bool = False) -> PluginRenderer:
    """``reason NAME info1 .. info2 .. int_info .. int_info_err ..`` (SVM's field names);
    kvm_nested_vmexit first `` rip ..`` (which kernels since 5.x no longer have: the
    handler then fails and the print fmt text follows its error)."""
    rip_f, code_f, isa_f = fmt.field("rip"), fmt.field("exit_code"), fmt.field("isa")
    numbers = [(label, name, fmt.field(name)) for label, name in (
        ("info1", "exit_info1"), ("info2", "exit_info2"), ("int_info", "exit_int_info"),
        ("int_info_err", "exit_int_info_err"))]

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        out = ""
        if prefix_rip:
            rip, error = _field_val(payload, rip_f, "rip", little)
            if rip is None:
                return error + default_text()
            out = f" rip {rip:x}"
        code, error = _field_val(payload, code_f, "exit_code", little)
        if code is None:
            return out + error + default_text()
        isa = _read_unsigned(payload, isa_f, little) if isa_f is not None and isa_f.size in (1, 2, 4, 8) else 1
        out += "reason " + _exit_reason(code, isa)
        for label, name, f in numbers:
            # " info1 %llx": the value as read (unsigned, the field's size)
            out += _num_field_text(payload, f, name, little, lambda v, label=label: f" {label} {v:x}")
        return out

    return render


def _kvm_nested_vmexit(fmt: EventFormat) -> PluginRenderer:
    return _kvm_nested_vmexit_inject(fmt, prefix_rip=True)


_MMU_ACCESS = ("---", "--x", "w--", "w-x", "-u-", "-ux", "wu-", "wux")


def _kvm_mmu_role_text(payload: bytes, fmt_fields: dict, little: bool) -> tuple[str, bool]:
    """kvm_mmu_print_role: (text, whether the handler failed).  The role word is read with the
    plugin's own (old, 2015) bit layout whatever the kernel's; a big-endian file prints the
    word in hex."""
    role, error = _field_val(payload, fmt_fields["role"], "role", little)
    if role is None:
        return error, True
    role &= 0xFFFFFFFF
    if little:  # the file's byte order is this machine's (trace-cmd runs on little-endian x86)
        def bit(n: int, width: int = 1) -> int:
            return (role >> n) & ((1 << width) - 1)
        out = (f"{bit(0, 4)} q{bit(5, 2)}{' direct' if bit(7) else ''} {_MMU_ACCESS[bit(8, 3)]}"
               f"{' invalid' if bit(11) else ''} {'' if bit(4) else '!'}pae {'' if bit(12) else '!'}nxe "
               f"{'' if bit(13) else '!'}wp{' smep' if bit(14) else ''}{' smap' if bit(15) else ''}"
               f"{' smm' if bit(24, 8) else ''}")
    else:
        out = f"WORD: {role:08x}"
    out += _num_field_text(payload, fmt_fields["root_count"], "root_count", little,
                           lambda v: f" root {v & 0xFFFFFFFF} ")
    unsync, error = _field_val(payload, fmt_fields["unsync"], "unsync", little)
    if unsync is None:
        return out + error, True
    # the handler ends with "%c" of 0: a NUL, where trace-cmd's printing of the line stops
    return out + ("unsync" if unsync else "sync"), False


def _kvm_mmu_role(fmt: EventFormat) -> PluginRenderer:
    """kvm_mmu_sync_page, _unsync_page, _zap_page, _prepare_zap_page: the page's role."""
    fields = {name: fmt.field(name) for name in ("role", "root_count", "unsync")}

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        text, failed = _kvm_mmu_role_text(payload, fields, symbols.little_endian)
        return text + default_text() if failed else text

    return render


def _kvm_mmu_get_page(fmt: EventFormat) -> PluginRenderer:
    """``new sp gfn 1f2 `` then the role (kvm_mmu_get_page_handler)."""
    fields = {name: fmt.field(name) for name in ("role", "root_count", "unsync")}
    created_f, gfn_f = fmt.field("created"), fmt.field("gfn")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        created, error = _field_val(payload, created_f, "created", little)
        if created is None:
            return error + default_text()
        out = "new " if created else "existing "
        gfn, error = _field_val(payload, gfn_f, "gfn", little)
        if gfn is None:
            return out + error + default_text()
        out += f"sp gfn {gfn:x} "
        text, failed = _kvm_mmu_role_text(payload, fields, little)
        return out + text + default_text() if failed else out + text

    return render


# ---------------------------------------------------------------------------
# futex plugin (syscalls:sys_enter_futex)

_FUTEX_PRIVATE_FLAG, _FUTEX_CLOCK_REALTIME = 128, 256
# per command: its name, then how val, utime (or val2), uaddr2 and val3 print (None: not printed)
_HEX, _DEC = "0x{:08x}", "{}"
_FUTEX_OPS = (
    ("FUTEX_WAIT", ("val", _HEX), ("utime", _HEX), None, None),
    ("FUTEX_WAKE", ("val", _DEC), None, None, None),
    ("FUTEX_FD", ("val", _DEC), None, None, None),
    ("FUTEX_REQUEUE", ("val", _DEC), ("val2", _DEC), ("uaddr2", _HEX), None),
    ("FUTEX_CMP_REQUEUE", ("val", _DEC), ("val2", _DEC), ("uaddr2", _HEX), ("val3", _HEX)),
    ("FUTEX_WAKE_OP", ("val", _DEC), ("val2", _DEC), ("uaddr2", _HEX), ("val3", _HEX)),
    ("FUTEX_LOCK_PI", None, ("utime", _HEX), None, None),
    ("FUTEX_UNLOCK_PI", None, None, None, None),
    ("FUTEX_TRYLOCK_PI", None, None, None, None),
    ("FUTEX_WAIT_BITSET", ("val", _HEX), ("utime", _HEX), None, ("val3", _HEX)),
    ("FUTEX_WAKE_BITSET", ("val", _DEC), None, None, ("val3", _HEX)),
    ("FUTEX_WAIT_REQUEUE_PI", ("val", _HEX), ("utime", _HEX), ("uaddr2", _HEX), ("val3", _HEX)),
    ("FUTEX_CMP_REQUEUE_PI", ("val", _DEC), ("val2", _DEC), ("uaddr2", _HEX), ("val3", _HEX)),
)


def _sys_enter_futex(fmt: EventFormat) -> PluginRenderer:
    """``op=FUTEX_WAKE|FUTEX_PRIVATE_FLAG uaddr=0x.. val=1``: the command by name and the
    arguments it uses; an unknown command prints the print fmt."""
    names = ("uaddr", "op", "val", "utime", "uaddr2", "val3")
    fields = [(name, fmt.field(name)) for name in names]

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        args = {}
        for name, f in fields:
            value, error = _field_val(payload, f, name, little)
            if value is None:  # the handler gives up: the print fmt text follows
                return error + default_text()
            args[name] = value
        op = args["op"]
        cmd = op & ~(_FUTEX_PRIVATE_FLAG | _FUTEX_CLOCK_REALTIME)
        if cmd >= len(_FUTEX_OPS):
            return default_text()
        name, *shown = _FUTEX_OPS[cmd]
        out = "op=" + name
        if op & _FUTEX_PRIVATE_FLAG:
            out += "|FUTEX_PRIVATE_FLAG"
        if op & _FUTEX_CLOCK_REALTIME:
            out += "|FUTEX_CLOCK_REALTIME"
        out += f" uaddr=0x{args['uaddr']:08x}"
        for arg, how in zip(("val", "utime", "uaddr2", "val3"), shown):
            if how is not None:
                label, number = how
                out += f" {label}=" + number.format(args[arg])
        return out

    return render


# ---------------------------------------------------------------------------
# tlb plugin

_TLB_FLUSH_REASONS = {0: "flush on task switch", 1: "remote shootdown", 2: "local shootdown",
                      3: "local mm shootdown"}


def _tlb_flush(fmt: EventFormat) -> PluginRenderer:
    """``pages=N reason=TEXT (n)``: pages as a 64-bit ``%ld``, the reason named for 0-3 only
    (the kernel's print fmt also knows ``remote ipi send``; the plugin does not)."""
    pages_f, reason_f = fmt.field("pages"), fmt.field("reason")

    def render(payload: bytes, symbols: TraceSymbols, default_text: EventText) -> str:
        little = symbols.little_endian
        out = "pages="
        if pages_f is None:
            out += _missing_field("pages")
        else:
            pages = _read_unsigned(payload, pages_f, little)
            out += str(pages - (1 << 64) if pages >> 63 else pages)
        if reason_f is None:  # the handler fails: the print fmt text follows
            return out + _missing_field("reason") + default_text()
        reason = _read_unsigned(payload, reason_f, little)
        return out + " reason=" + _TLB_FLUSH_REASONS.get(reason, "") + f" ({reason})"

    return render


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
    ("kvm", "kvm_exit"): _kvm_exit,
    ("kvm", "kvm_entry"): _kvm_entry,
    ("kvm", "kvm_emulate_insn"): _kvm_emulate_insn,
    ("kvm", "kvm_nested_vmexit"): _kvm_nested_vmexit,
    ("kvm", "kvm_nested_vmexit_inject"): _kvm_nested_vmexit_inject,
    ("kvmmmu", "kvm_mmu_get_page"): _kvm_mmu_get_page,
    **{("kvmmmu", name): _kvm_mmu_role for name in ("kvm_mmu_sync_page", "kvm_mmu_unsync_page", "kvm_mmu_zap_page",
                                                      "kvm_mmu_prepare_zap_page")},
    ("tlb", "tlb_flush"): _tlb_flush,
    ("syscalls", "sys_enter_futex"): _sys_enter_futex,
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
