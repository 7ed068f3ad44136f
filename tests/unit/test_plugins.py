"""trace-cmd plugin renderers on hand-built records (formats as the kernel writes them)."""

from __future__ import annotations

import struct

import pytest

from tests.conftest import FIXTURES, fixture_path
from tracewatch.formats.event_format import parse_event_format
from tracewatch.formats.plugins import find_function, plugin_renderer
from tracewatch.formats.symbols import Cmdlines, KernelSymbols, TraceSymbols

EVENTS = FIXTURES / "raw-pages" / "events"

KMALLOC_FORMAT = """name: kmalloc
ID: 658
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;
\tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:size_t bytes_req;\toffset:24;\tsize:8;\tsigned:0;
\tfield:size_t bytes_alloc;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long gfp_flags;\toffset:40;\tsize:8;\tsigned:0;
\tfield:int node;\toffset:48;\tsize:4;\tsigned:1;

print fmt: "call_site=%pS ptr=%p bytes_req=%zu bytes_alloc=%zu gfp_flags=%s node=%d", REC->call_site, REC->ptr, REC->bytes_req, REC->bytes_alloc, "GFP", REC->node
"""

HRTIMER_EXPIRE_FORMAT = """name: hrtimer_expire_entry
ID: 120
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * hrtimer;\toffset:8;\tsize:8;\tsigned:0;
\tfield:s64 now;\toffset:16;\tsize:8;\tsigned:1;
\tfield:void * function;\toffset:24;\tsize:8;\tsigned:0;

print fmt: "hrtimer=%p function=%ps now=%llu", REC->hrtimer, REC->function, (unsigned long long) REC->now
"""

HRTIMER_START_FORMAT = """name: hrtimer_start
ID: 121
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * hrtimer;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * function;\toffset:16;\tsize:8;\tsigned:0;
\tfield:s64 expires;\toffset:24;\tsize:8;\tsigned:1;
\tfield:s64 softexpires;\toffset:32;\tsize:8;\tsigned:1;
\tfield:enum hrtimer_mode mode;\toffset:40;\tsize:4;\tsigned:0;
\tfield:bool was_armed;\toffset:44;\tsize:1;\tsigned:0;

print fmt: "hrtimer=%p function=%ps expires=%llu softexpires=%llu mode=%s", REC->hrtimer, REC->function, (unsigned long long) REC->expires, (unsigned long long) REC->softexpires, "M"
"""


def load(system: str, name: str):
    return parse_event_format(fixture_path(f"raw-pages/events/{system}/{name}/format").read_text(), system)


def symbols(kallsyms: str = "", cmdlines: str = "") -> TraceSymbols:
    return TraceSymbols(kallsyms=KernelSymbols.parse(kallsyms), cmdlines=Cmdlines.parse(cmdlines))


def header(type_id: int, pid: int) -> bytes:
    return struct.pack("<HBBi", type_id, 0, 0, pid)


def comm(text: str) -> bytes:
    return text.encode().ljust(16, b"\0")


def no_default() -> str:
    raise AssertionError("this plugin replaces the print fmt text")


KALLSYMS = """ffffffff81100000 T copy_process
ffffffff81100800 T next_func
ffffffff814352e0 t tick_nohz_handler
ffffffff81435400 t after_tick
"""


def test_find_function_follows_libtraceevent_bounds():
    syms = symbols(KALLSYMS)
    assert find_function(syms, 0xFFFFFFFF8110018A) == ("copy_process", 0xFFFFFFFF81100000)
    assert find_function(syms, 0xFFFFFFFF81100000) == ("copy_process", 0xFFFFFFFF81100000)
    assert find_function(syms, 0xFFFFFFFF81000000) is None
    # past the last symbol only its exact address matches (libtraceevent's sentinel)
    assert find_function(syms, 0xFFFFFFFF81435400) == ("after_tick", 0xFFFFFFFF81435400)
    assert find_function(syms, 0xFFFFFFFF81435401) is None


def test_sched_switch_states_and_comm_registration():
    fmt = load("sched", "sched_switch")
    render = plugin_renderer(fmt)
    syms = symbols()
    payload = (header(fmt.id, 9084) + comm("bash") + struct.pack("<iiq", 9084, 120, 1) + comm("bash")
               + struct.pack("<ii", 9090, 120))
    assert render(payload, syms, no_default) == "bash:9084 [120] S ==> bash:9090 [120]"
    assert syms.cmdlines.by_pid == {9084: "bash", 9090: "bash"}
    # libtraceevent 1.7's fixed letters: bit 4 Z, bit 5 X, bit 7 W; 256 (TASK_REPORT_MAX) is "R"
    for state, text in ((0, "R"), (2, "D"), (16, "Z"), (32, "X"), (128, "W"), (256, "R"), (3, "S|D")):
        payload = (header(fmt.id, 1) + comm("a") + struct.pack("<iiq", 1, 120, state) + comm("swapper/0")
                   + struct.pack("<ii", 0, 120))
        assert render(payload, syms, no_default) == f"a:1 [120] {text} ==> swapper/0:0 [120]"
    assert 0 not in syms.cmdlines.by_pid  # pid 0 is always <idle>, never registered


def test_sched_switch_keeps_known_comm():
    fmt = load("sched", "sched_switch")
    syms = symbols(cmdlines="77 original\n")
    payload = (header(fmt.id, 77) + comm("renamed") + struct.pack("<iiq", 77, 120, 0) + comm("x")
               + struct.pack("<ii", 78, 120))
    plugin_renderer(fmt)(payload, syms, no_default)
    assert syms.cmdlines.by_pid[77] == "original"


def test_sched_wakeup():
    fmt = load("sched", "sched_wakeup")
    payload = header(fmt.id, 5) + comm("migration/1") + struct.pack("<iii", 21, 0, 1)
    assert plugin_renderer(fmt)(payload, symbols(), no_default) == "migration/1:21 [0] CPU:001"


def test_kmem_prefix_then_default_text():
    fmt = parse_event_format(KMALLOC_FORMAT, "kmem")
    render = plugin_renderer(fmt)
    payload = header(fmt.id, 1) + struct.pack("<QQQQQi", 0xFFFFFFFF8110018A, 0xFFFF8881, 11, 16, 0, -1)
    assert render(payload, symbols(KALLSYMS), lambda: "DEFAULT") == "(copy_process+0x18a) DEFAULT"
    # an unresolved call site: only the default text
    assert render(payload, symbols(), lambda: "DEFAULT") == "DEFAULT"


def test_hrtimer_handlers():
    syms = symbols(KALLSYMS)
    fmt = parse_event_format(HRTIMER_EXPIRE_FORMAT, "timer")
    payload = header(fmt.id, 0) + struct.pack("<QqQ", 0xFFFF888627D1C6F8, 634284018393, 0xFFFFFFFF814352E0)
    assert plugin_renderer(fmt)(payload, syms, no_default) == (
        "hrtimer=0xffff888627d1c6f8 now=634284018393 function=tick_nohz_handler/0x0")
    fmt = parse_event_format(HRTIMER_START_FORMAT, "timer")
    payload = header(fmt.id, 0) + struct.pack("<QQqqIB3x", 0xFFFF888627D1C6F8, 0xFFFFFFFF814352E0,
                                              634288000000, 634288000000, 0, 0)
    assert plugin_renderer(fmt)(payload, syms, no_default) == (
        "hrtimer=0xffff888627d1c6f8 function=tick_nohz_handler/0x0 expires=634288000000 softexpires=634288000000")
    # unknown function: 0x%08llx
    payload = header(fmt.id, 0) + struct.pack("<QQqqIB3x", 1, 0x1234, 5, 6, 0, 0)
    assert "function=0x00001234 " in plugin_renderer(fmt)(payload, symbols(), no_default)


def test_raw_data_prints_every_record_byte():
    fmt = load("ftrace", "raw_data")
    render = plugin_renderer(fmt)
    assert render(header(fmt.id, 1) + struct.pack("<I", 0x1000), symbols(), no_default) == "# 1000"
    payload = header(fmt.id, 1) + struct.pack("<I", 0x1001) + b"\x01\x55\x00\x00"
    assert render(payload, symbols(), no_default) == "# 1001 01 55 00 00"


def test_function_handler_is_the_function_plugins():
    # trace-cmd's own "func <-- parent" handler loses to the plugin's (registered later):
    # the function's name, indented 3 spaces per level of the calls seen on its CPU
    fmt = load("ftrace", "function")
    syms = symbols(KALLSYMS)
    ip = fmt.field("ip")
    parent = fmt.field("parent_ip")
    render = plugin_renderer(fmt)

    def call(func: int, caller: int, cpu: int) -> str:
        payload = bytearray(max(ip.offset + 8, parent.offset + 8))
        payload[:8] = header(fmt.id, 1)
        struct.pack_into("<Q", payload, ip.offset, func)
        struct.pack_into("<Q", payload, parent.offset, caller)
        return render(bytes(payload), syms, no_default, cpu)

    tick, fork = 0xFFFFFFFF814352F0, 0xFFFFFFFF81100010  # tick_nohz_handler, copy_process
    assert call(fork, tick, 0) == "copy_process"  # unknown parent: level 0
    assert call(0x10, fork, 0) == "   0x10"  # called from copy_process (level 1)
    assert call(tick, fork, 1) == "tick_nohz_handler"  # another CPU has its own list
    assert call(fork, tick, 0) == "copy_process"  # back at the top
    assert call(tick, 0x20, 0) == "tick_nohz_handler"  # parent without a symbol: not indented


@pytest.mark.parametrize("system,name", [("sched", "sched_process_fork"), ("raw_syscalls", "sys_enter"),
                                         ("ftrace", "print")])
def test_events_without_plugin(system, name):
    assert plugin_renderer(load(system, name)) is None
