"""malloc request sizes per command (a uprobe the script asks for itself), and failed mallocs.

    tracewatch run examples/probes/malloc_sizes.py -- ls -l /usr     # live, while ls runs
    tracewatch run examples/probes/malloc_sizes.py -p 1234 -d 5      # libc as process 1234 maps it
"""

from tracewatch import Map, at_end, hist, on_probe

sizes = Map(hist)
failed = Map(int)


@on_probe("libc:malloc(size=arg1:u64)")
def malloc(ev):
    sizes[ev.common_comm].add(ev.size)


@on_probe("r:libc:malloc ret=$retval:x64", where="ret == 0")
def malloc_failed(ev):
    failed[ev.common_comm] += 1


@at_end
def report():
    sizes.print(title="bytes")
    failed.print(title="failed")
