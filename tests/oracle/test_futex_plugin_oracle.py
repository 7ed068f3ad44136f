"""syscalls:sys_enter_futex as trace-cmd's futex plugin prints it (real guest traces have it):
every command, the PRIVATE and CLOCK_REALTIME flags, and commands it does not know (the
print fmt then)."""

from __future__ import annotations

import dataclasses
import shutil
import struct

import pytest

SYS_ENTER_FUTEX = """name: sys_enter_futex
ID: 922
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:u32 * uaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int op;\toffset:24;\tsize:8;\tsigned:0;
\tfield:u32 val;\toffset:32;\tsize:8;\tsigned:0;
\tfield:const struct __kernel_timespec * utime;\toffset:40;\tsize:8;\tsigned:0;
\tfield:u32 * uaddr2;\toffset:48;\tsize:8;\tsigned:0;
\tfield:u32 val3;\toffset:56;\tsize:8;\tsigned:0;

print fmt: "uaddr: 0x%08lx, op: 0x%08lx, val: 0x%08lx, utime: 0x%08lx, uaddr2: 0x%08lx, val3: 0x%08lx", ((unsigned long)(REC->uaddr)), ((unsigned long)(REC->op)), ((unsigned long)(REC->val)), ((unsigned long)(REC->utime)), ((unsigned long)(REC->uaddr2)), ((unsigned long)(REC->val3))
"""


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd is not installed")
def test_sys_enter_futex_matches_trace_cmd(tmp_path) -> None:
    from tests.oracle.test_print_fmt_oracle import DAT_FILES, _reader, _trace_cmd_text
    from tracewatch.formats.report_text import report_lines
    from tracewatch.formats.tracedat_writer import TraceMeta, write_tracedat
    from tracewatch.testing.page_builder import PageBuilder

    base_file = DAT_FILES["e_mixed"]
    if not base_file.exists():
        pytest.skip(f"{base_file} missing")
    base = TraceMeta.from_reader(_reader(base_file))
    pages = PageBuilder()
    ops = [*range(14), 128 | 9, 256 | 9, 384 | 0, 1 << 40, 0x7F]
    for n, op in enumerate(ops):
        pages.add(10 * (n + 1), struct.pack("<HBBiixxxxQQQQQQ", 922, 0, 0, 9, 202, 0x7F12_3456_7000 + n, op,
                                            n * 1000 + 3, 0xFFFF_0000 + n, 0x5612_0000_0000 + n, 0xFFFF_FFFF - n))
    meta = dataclasses.replace(base, event_formats={"syscalls": [SYS_ENTER_FUTEX]}, cpustats={})
    path = tmp_path / "futex.dat"
    write_tracedat(path, meta, {0: [pages.build()]})
    ours = "".join(line + "\n" for line in report_lines(_reader(path)))
    theirs = _trace_cmd_text(path, False)
    assert "op=FUTEX_WAIT_BITSET|FUTEX_PRIVATE_FLAG uaddr=" in theirs  # the premise: the plugin's text
    assert "uaddr: 0x7f123456700d, op: 0x0000000d" in theirs  # and the print fmt's for an unknown command
    assert ours == theirs
