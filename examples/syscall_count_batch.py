"""The same count as syscall_count.py, with a batch handler: numpy columns, no per-event Python.

    tracewatch run examples/syscall_count_batch.py -i trace.dat
"""

from tracewatch import Map, at_end, on_batch

calls = Map(int)


@on_batch("raw_syscalls:sys_enter", where="common_pid != 0")
def enter(b):
    calls.add_counts((b.common_comm, b.id))


@at_end
def report():
    calls.print(top=10, title="calls")
