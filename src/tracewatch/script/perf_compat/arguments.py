"""Turn tracewatch :class:`~tracewatch.stream.batch.Event` objects into perf's handler arguments.

perf calls ``system__event(event_name, context, common_cpu, common_secs,
common_nsecs, common_pid, common_comm, common_callchain, <fields>,
[perf_sample_dict])`` where ``<fields>`` are the event's own fields (not the
``common_*`` header fields) in format order, converted as perf's
trace-event-python.c converts them (checked against perf 6.1's ``perf script``):

* scalars are ints, but a *signed* field narrower than 8 bytes arrives
  zero-extended (an ``int`` holding -6 is passed as 4294967290): perf reads
  every field as an unsigned number of its size and only 8-byte values keep
  their sign;
* every array (``char comm[16]``, ``unsigned long args[6]``, ``__data_loc``,
  ``__rel_loc``) is a ``bytearray`` of its raw bytes, except a char/u8/s8
  array whose bytes end in NUL and are printable ASCII up to the first NUL,
  which is a ``str``;
* ``common_callchain`` is always a list (empty: a trace.dat has no stacks);
* ``perf_sample_dict`` is added only when the handler's ``__code__.co_argcount``
  is exactly one more than the arguments above.

An adapter is built once per event type: it knows the tuple positions of the
fields it passes (an Event is a tuple, so ``ev[i]`` is the cheapest read) and
which of them need converting.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Callable

from ...formats.event_format import EventFormat, Field
from ...stream.batch import event_layout
from .context import PerfContext

__all__ = ["HandlerAdapterFactory", "perf_comm_lookup", "wants_sample_dict"]

NSECS_PER_SEC = 1_000_000_000

# isprint() or isspace() in the C locale: what perf's is_printable_array accepts
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\v\f\r"

# What perf puts in perf_sample_dict['sample'] for values a trace.dat does not
# carry (data source "not available", as perf reports it for tracepoints)
_DATASRC_NA = 84410401
_DATASRC_NA_TEXT = "|OP N/A|LVL N/A|SNP N/A|TLB N/A|LCK N/A|BLK  N/A"
_CPUMODE_KERNEL = 1


def perf_comm_lookup(by_pid: dict[int, str]) -> Callable[[int], str]:
    """``pid -> comm`` as perf names threads: ``swapper`` for 0, ``:PID`` when unknown.

    Names come from the trace's saved cmdlines (``by_pid``, which a live run
    keeps up to date); perf instead tracks comm changes over time.
    """

    def comm(pid: int) -> str:
        name = by_pid.get(pid)
        if name is None:
            return "swapper" if pid == 0 else f":{pid}"
        return name

    return comm


def wants_sample_dict(func: Callable[..., Any], n_args: int) -> bool:
    """perf's rule: add perf_sample_dict when the function takes exactly one more positional argument."""
    code = getattr(func, "__code__", None)
    return code is not None and code.co_argcount == n_args + 1


def _is_string_type(f: Field) -> bool:
    # libtraceevent's field_is_string(): any array whose type mentions char, u8 or s8
    return any(word in f.type for word in ("char", "u8", "s8"))


def _array_converter(f: Field, little: bool) -> Callable[[bytes], Any]:
    """payload -> perf's value of array field ``f``: str when printable text, else bytearray."""
    is_string = _is_string_type(f)
    dynamic_or_trailing = f.is_dynamic or f.array_len == 0
    start, size = f.offset, f.size

    def convert(payload: bytes) -> Any:
        if dynamic_or_trailing:
            s, n = f.data_span(payload, little)
            raw = payload[s : s + n]
        else:
            raw = payload[start : start + size]
        if is_string and raw and raw[-1] == 0:
            text = raw[: raw.index(0)]
            if not text.translate(None, _PRINTABLE):
                return text.decode("ascii")
        return bytearray(raw)

    return convert


def _scalar_converter(f: Field) -> Callable[[Any], Any] | None:
    """None when tracewatch's int is already perf's; else the zero-extension perf applies."""
    if f.signed and f.size in (1, 2, 4):
        mask = (1 << (8 * f.size)) - 1
        return lambda v: v & mask
    return None


class HandlerAdapterFactory:
    """Builds, per event type, the function the dispatcher calls with each Event."""

    def __init__(self, context: PerfContext, comm: Callable[[int], str], little_endian: bool = True) -> None:
        self.context = context
        self.comm = comm
        self.little = little_endian

    def _layout(self, fmt: EventFormat) -> tuple[int, int, int]:
        """Tuple positions of common_pid, common_ts and common_cpu in this type's Events."""
        layout = event_layout(fmt)
        return layout.get("common_pid", -1), layout["common_ts"], layout["common_cpu"]

    def field_values(self, fmt: EventFormat) -> tuple[list[str], Callable[[Any], tuple | list]]:
        """The event's own field names and a function ``Event -> their perf values``."""
        fields = fmt.event_fields
        positions = event_layout(fmt)
        names = [f.name for f in fields]
        readers: list[Callable[[Any, bytes | None], Any]] = []
        needs_payload = False
        plain = True
        for f in fields:
            i = positions.get(f.name)
            if f.is_array:
                plain_ok = False
                needs_payload = True
                conv = _array_converter(f, self.little)
                readers.append(lambda ev, p, conv=conv: conv(p))
            elif i is None:  # a value with no tuple slot (an odd-sized scalar): read as the attribute
                plain_ok = False
                readers.append(lambda ev, p, name=f.name: getattr(ev, name))
            else:
                scalar = _scalar_converter(f)
                plain_ok = scalar is None
                if scalar is None:
                    readers.append(lambda ev, p, i=i: ev[i])
                else:
                    readers.append(lambda ev, p, i=i, c=scalar: c(ev[i]))
            plain = plain and plain_ok
        if plain:
            idx = [positions[n] for n in names]
            if not idx:
                return names, lambda ev: ()
            if len(idx) == 1:
                only = idx[0]
                return names, lambda ev: (ev[only],)
            return names, itemgetter(*idx)
        if needs_payload:
            # an Event ends with (its batch, its row): the raw record is one slice away
            return names, lambda ev: [r(ev, p) for p in (ev[-2].payload_(ev[-1]),) for r in readers]
        return names, lambda ev: [r(ev, None) for r in readers]

    def sample_dict(self, fmt: EventFormat, ev: Any, pid: int, comm: str, callchain: list) -> dict[str, Any]:
        """perf_sample_dict with what a trace.dat knows (no ip, symbols, registers or branch stacks)."""
        _pid_i, ts_i, cpu_i = self._layout(fmt)
        ts, cpu = ev[ts_i], ev[cpu_i]
        return {
            "ev_name": fmt.full_name,
            "attr": b"",
            "sample": {
                "pid": pid, "tid": pid, "cpu": cpu, "ip": 0, "time": ts, "period": 1,
                "phys_addr": 0, "addr": 0, "values": [(0, 0, 0)], "weight": 0, "transaction": 0,
                "datasrc": _DATASRC_NA, "datasrc_decode": _DATASRC_NA_TEXT, "cpumode": _CPUMODE_KERNEL,
            },
            "raw_buf": ev[-2].payload_(ev[-1]),
            "comm": comm,
            "callchain": callchain,
            "brstack": [],
            "brstacksym": [],
            "iregs": "",
            "uregs": "",
        }

    def handler(self, fmt: EventFormat, func: Callable[..., Any]) -> Callable[[Any], None]:
        """``Event -> func(event_name, context, common_cpu, ..., <fields>[, perf_sample_dict])``."""
        event_name = f"{fmt.system}__{fmt.name}"
        pid_i, ts_i, cpu_i = self._layout(fmt)
        names, values = self.field_values(fmt)
        context, comm = self.context, self.comm
        with_dict = wants_sample_dict(func, 8 + len(names))
        sample_dict = self.sample_dict

        if not with_dict:
            def adapter(ev: Any) -> None:
                ts = ev[ts_i]
                pid = ev[pid_i] if pid_i >= 0 else -1
                context.event = ev
                func(event_name, context, ev[cpu_i], ts // NSECS_PER_SEC, ts % NSECS_PER_SEC,
                     pid, comm(pid), [], *values(ev))
        else:
            def adapter(ev: Any) -> None:
                ts = ev[ts_i]
                pid = ev[pid_i] if pid_i >= 0 else -1
                name = comm(pid)
                callchain: list = []
                context.event = ev
                func(event_name, context, ev[cpu_i], ts // NSECS_PER_SEC, ts % NSECS_PER_SEC,
                     pid, name, callchain, *values(ev), sample_dict(fmt, ev, pid, name, callchain))

        adapter.__name__ = adapter.__qualname__ = getattr(func, "__qualname__", event_name)
        return adapter

    def unhandled(self, fmt: EventFormat, func: Callable[..., Any]) -> Callable[[Any], None]:
        """``Event -> trace_unhandled(event_name, context, event_fields_dict[, perf_sample_dict])``."""
        event_name = f"{fmt.system}__{fmt.name}"
        pid_i, ts_i, cpu_i = self._layout(fmt)
        names, values = self.field_values(fmt)
        context, comm = self.context, self.comm
        with_dict = wants_sample_dict(func, 3)
        sample_dict = self.sample_dict

        def adapter(ev: Any) -> None:
            ts = ev[ts_i]
            pid = ev[pid_i] if pid_i >= 0 else -1
            name = comm(pid)
            callchain: list = []
            fields = {"common_cpu": ev[cpu_i], "common_s": ts // NSECS_PER_SEC,
                      "common_ns": ts % NSECS_PER_SEC, "common_pid": pid, "common_comm": name,
                      "common_callchain": callchain}
            fields.update(zip(names, values(ev)))
            context.event = ev
            if with_dict:
                func(event_name, context, fields, sample_dict(fmt, ev, pid, name, callchain))
            else:
                func(event_name, context, fields)

        adapter.__name__ = adapter.__qualname__ = getattr(func, "__qualname__", "trace_unhandled")
        return adapter
