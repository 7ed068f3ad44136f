"""tracewatch's ``Core`` module for ``perf script -s`` Python scripts.

perf scripts do ``from Core import *``; this module gives them the same names
and results as perf's own Core.py: ``autodict``, the flag/symbol tables that
the runner fills from each event's print fmt (``define_flag_field``,
``define_flag_value``, ``define_symbolic_field``, ``define_symbolic_value``),
their readers ``flag_str`` / ``symbol_str``, ``trace_flag_str``,
``taskState`` and ``EventHeaders``.

The tables are keyed like perf's: event name ``system__event``, then field
name, then ``'delim'`` / ``'values'``.  The runner calls the ``define_*``
functions it finds in the script's namespace (as perf does), so a script
may replace them.
"""

from collections import defaultdict

__all__ = [
    "autodict", "flag_fields", "symbolic_fields",
    "define_flag_field", "define_flag_value", "define_symbolic_field", "define_symbolic_value",
    "flag_str", "symbol_str", "trace_flags", "trace_flag_str", "taskState", "EventHeaders",
]


def autodict():
    """A dict that creates nested levels on first use: ``d[a][b][c] += 1`` style counting.

    A missing leaf is itself an empty autodict, so scripts count with
    ``try: d[k] += 1 except TypeError: d[k] = 1`` (perf scripts rely on that).
    """
    return defaultdict(autodict)


#: event name -> field -> {'delim': str, 'values': {value: name}} from __print_flags
flag_fields = autodict()
#: event name -> field -> {'values': {value: name}} from __print_symbolic
symbolic_fields = autodict()


def define_flag_field(event_name, field_name, delim):
    """Called once per __print_flags of an event's print fmt: remember its delimiter."""
    flag_fields[event_name][field_name]['delim'] = delim


def define_flag_value(event_name, field_name, value, field_str):
    """Called per ``{ value, "name" }`` entry of a __print_flags table."""
    flag_fields[event_name][field_name]['values'][value] = field_str


def define_symbolic_field(event_name, field_name):
    """Called once per __print_symbolic; nothing to remember beyond its values."""


def define_symbolic_value(event_name, field_name, value, field_str):
    """Called per ``{ value, "name" }`` entry of a __print_symbolic table."""
    symbolic_fields[event_name][field_name]['values'][value] = field_str


def flag_str(event_name, field_name, value):
    """``value`` as the kernel's __print_flags names it (``"S|D"``); "" when unknown.

    Bits are taken in increasing flag-value order; a zero value gives the name
    defined for 0 (if any).  Bits with no name are dropped, as in perf.
    """
    table = flag_fields[event_name][field_name]
    if not table:
        return ""
    names = table['values']
    delim = table['delim']
    parts = []
    for flag in sorted(names):
        if not value and not flag:
            parts.append(names[flag])
            break
        if flag and value & flag == flag:
            parts.append(names[flag])
            value &= ~flag
    if delim:
        return (" " + delim + " ").join(parts)
    return "".join(parts)


def symbol_str(event_name, field_name, value):
    """``value`` as the kernel's __print_symbolic names it; "" when no entry matches."""
    table = symbolic_fields[event_name][field_name]
    if not table:
        return ""
    return table['values'].get(value, "")


#: the bits of an event's common_flags (irq state at the time of the event)
trace_flags = {0x00: "NONE", 0x01: "IRQS_OFF", 0x02: "IRQS_NOSUPPORT", 0x04: "NEED_RESCHED",
               0x08: "HARDIRQ", 0x10: "SOFTIRQ"}


def trace_flag_str(value):
    """``common_flags`` as names joined by `` | `` (``"NONE"`` for 0)."""
    if not value:
        return "NONE"
    parts = []
    for flag, name in trace_flags.items():
        if flag and value & flag == flag:
            parts.append(name)
            value &= ~flag
    return " | ".join(parts)


_TASK_STATES = {0: "R", 1: "S", 2: "D", 64: "DEAD"}


def taskState(state):
    """A sched_switch ``prev_state`` as one letter (``"Unknown"`` for anything else)."""
    return _TASK_STATES.get(state, "Unknown")


class EventHeaders:
    """The common_* handler arguments of one event kept together (sched-migration.py uses it)."""

    def __init__(self, common_cpu, common_secs, common_nsecs, common_pid, common_comm,
                 common_callchain):
        self.cpu = common_cpu
        self.secs = common_secs
        self.nsecs = common_nsecs
        self.pid = common_pid
        self.comm = common_comm
        self.callchain = common_callchain

    def ts(self):
        """The event's time in nanoseconds."""
        return self.secs * 1000000000 + self.nsecs

    def ts_format(self):
        """``"secs.usecs"`` with the microseconds unpadded, as perf's helper prints it."""
        return "%d.%d" % (self.secs, int(self.nsecs / 1000))
