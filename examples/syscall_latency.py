"""Per-command syscall latency histograms from sys_enter/sys_exit pairing, printed every 100 ms of
trace time and at the end, like bpftrace's hist().

    tracewatch run examples/syscall_latency.py -i trace.dat
"""

from tracewatch import Map, SyscallPairing, at_end, every, hist, on

pairs = SyscallPairing()
latency = Map(hist)
slow = Map(int)


@on("raw_syscalls:sys_enter")
def enter(ev):
    pairs.sys_enter(ev)


@on("raw_syscalls:sys_exit")
def exit_(ev):
    done = pairs.sys_exit(ev)
    if done is not None:
        ns, sysid = done
        latency[ev.common_comm].add(ns // 1000)
        if ns > 1_000_000:
            slow[ev.common_comm, sysid] += 1


@every("100ms")
def tick():
    print(f"{len(slow)} (comm, syscall) pairs with calls over 1 ms so far")


@at_end
def report():
    latency.print(title="usecs")
    slow.print(title="over_1ms")
