"""Count system calls per command and syscall number, with a per-event handler.

    tracewatch run examples/syscall_count.py -i trace.dat
"""

from tracewatch import Map, at_end, on

calls = Map(int)


@on("raw_syscalls:sys_enter", where="common_pid != 0")
def enter(ev):
    calls[ev.common_comm, ev.id] += 1


@at_end
def report():
    calls.print(top=10, title="calls")
