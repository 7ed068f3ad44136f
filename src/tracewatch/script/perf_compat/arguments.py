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

from operator import attrgetter, itemgetter
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


def _raw_converter(f: Field) -> Callable[[bytes], Any]:
    """The raw bytes of array field ``f`` -> perf's value: str when printable text, else bytearray."""
    is_string = _is_string_type(f)

    def convert(raw: bytes) -> Any:
        if is_string and raw and raw[-1] == 0:
            text = raw[: raw.index(0)]
            if not text.translate(None, _PRINTABLE):
                return text.decode("ascii")
        return bytearray(raw)

    return convert


def _array_column(f: Field, little: bool) -> Callable[[Any], list[Any]]:
    """batch -> perf's value of array field ``f`` for every row of the batch.

    Fixed-size arrays come from one copy of the batch's raw column, sliced per row;
    dynamic and trailing arrays from each row's record.
    """
    convert = _raw_converter(f)
    size = f.size
    if not (f.is_dynamic or f.array_len == 0) and size > 0:
        def column(batch: Any) -> list[Any]:
            data = batch.raw_(f.name).tobytes()
            return [convert(data[at : at + size]) for at in range(0, len(data), size)]
        return column

    def column_of_records(batch: Any) -> list[Any]:
        out = []
        for i in range(len(batch)):
            payload = batch.payload_(i)
            if f.is_dynamic or f.array_len == 0:
                s, n = f.data_span(payload, little)
                out.append(convert(payload[s : s + n]))
            else:
                out.append(convert(payload[f.offset : f.offset + size]))
        return out

    return column_of_records


def _array_reader(f: Field, little: bool) -> Callable[[Any], Any]:
    """Event -> perf's value of array field ``f``, converted a batch at a time.

    An Event ends with (its batch, its row); the values of the batch in hand are kept
    until an event of another batch comes (a handler sees its batches one after another).
    """
    column = _array_column(f, little)
    last: list[Any] = [None, None]  # the batch, its values

    def read(ev: Any) -> Any:
        batch = ev[-2]
        if batch is not last[0]:
            last[1] = column(batch)
            last[0] = batch
        return last[1][ev[-1]]

    return read


def _scalar_converter(f: Field) -> Callable[[Any], Any] | None:
    """None when tracewatch's int is already perf's; else the zero-extension perf applies."""
    if f.signed and f.size in (1, 2, 4):
        mask = (1 << (8 * f.size)) - 1
        return lambda v: v & mask
    return None


class HandlerAdapterFactory:
    """Builds, per event type, the function the dispatcher calls with each Event."""

    def __init__(self, context: PerfContext, comm: Callable[[int], str], little_endian: bool = True,
                 names: dict[int, str] | None = None) -> None:
        self.context = context
        self.comm = comm
        self.little = little_endian
        # comm's own table when known: adapters read it directly and call comm() only for a miss
        self._names_get: Callable[[int], str | None] = names.get if names is not None else (lambda pid: None)

    def _layout(self, fmt: EventFormat) -> tuple[int, int, int]:
        """Tuple positions of common_pid, common_ts and common_cpu in this type's Events."""
        layout = event_layout(fmt)
        return layout.get("common_pid", -1), layout["common_ts"], layout["common_cpu"]

    def field_values(self, fmt: EventFormat) -> tuple[list[str], Callable[[Any], tuple | list]]:
        """The event's own field names and a function ``Event -> their perf values``."""
        fields = fmt.event_fields
        positions = event_layout(fmt)
        names = [f.name for f in fields]
        readers: list[Callable[[Any], Any]] = []
        plain = True
        for f in fields:
            i = positions.get(f.name)
            if f.is_array:
                plain_ok = False
                readers.append(_array_reader(f, self.little))
            elif i is None:  # a value with no tuple slot (an odd-sized scalar): read as the attribute
                plain_ok = False
                readers.append(attrgetter(f.name))
            else:
                scalar = _scalar_converter(f)
                plain_ok = scalar is None
                if scalar is None:
                    readers.append(itemgetter(i))
                else:
                    readers.append(lambda ev, i=i, c=scalar: c(ev[i]))
            plain = plain and plain_ok
        if plain:
            idx = [positions[n] for n in names]
            if not idx:
                return names, lambda ev: ()
            if len(idx) == 1:
                only = idx[0]
                return names, lambda ev: (ev[only],)
            return names, itemgetter(*idx)
        if len(readers) == 1:
            (only_reader,) = readers
            return names, lambda ev: (only_reader(ev),)
        if len(readers) == 2:  # the common case (sys_enter: id, args) without a loop
            r0, r1 = readers
            return names, lambda ev: (r0(ev), r1(ev))
        return names, lambda ev: [r(ev) for r in readers]

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
        context, comm, names_get = self.context, self.comm, self._names_get
        with_dict = wants_sample_dict(func, 8 + len(names))
        sample_dict = self.sample_dict

        if not with_dict:
            def adapter(ev: Any) -> None:
                ts = ev[ts_i]
                pid = ev[pid_i] if pid_i >= 0 else -1
                name = names_get(pid)
                if name is None:
                    name = comm(pid)
                context.event = ev
                func(event_name, context, ev[cpu_i], ts // NSECS_PER_SEC, ts % NSECS_PER_SEC,
                     pid, name, [], *values(ev))
        else:
            def adapter(ev: Any) -> None:
                ts = ev[ts_i]
                pid = ev[pid_i] if pid_i >= 0 else -1
                name = names_get(pid)
                if name is None:
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
        context, comm, names_get = self.context, self.comm, self._names_get
        with_dict = wants_sample_dict(func, 3)
        sample_dict = self.sample_dict

        def adapter(ev: Any) -> None:
            ts = ev[ts_i]
            pid = ev[pid_i] if pid_i >= 0 else -1
            name = names_get(pid)
            if name is None:
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
