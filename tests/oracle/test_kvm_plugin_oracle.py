"""The kvm plugin's other handlers against trace-cmd: kvm_emulate_insn, kvm_nested_vmexit[_inject]
and the kvmmmu page events (kvm_exit/kvm_entry are in test_raw_fields_oracle).

The formats are a 6.18 kernel's (print fmts shortened: the plugin replaces them, and where a
handler fails, libtraceevent appends them) and, for kvm_nested_vmexit, a 4.x kernel's SVM
layout, the only one with the ``rip`` and ``exit_code`` fields the plugin reads.
"""

from __future__ import annotations

import shutil
import struct

import pytest

from tests.oracle.written_traces import our_text, trace_cmd_text, write_trace
from tracewatch.testing.page_builder import PageBuilder

_COMMON = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""


def _format(name: str, event_id: int, fields: str, print_fmt: str) -> str:
    return f"name: {name}\nID: {event_id}\nformat:\n{_COMMON}\n{fields}\nprint fmt: {print_fmt}\n"


EMULATE_INSN = _format("kvm_emulate_insn", 902, """\tfield:__u64 rip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__u32 csbase;\toffset:16;\tsize:4;\tsigned:0;
\tfield:__u8 len;\toffset:20;\tsize:1;\tsigned:0;
\tfield:__u8 insn[15];\toffset:21;\tsize:15;\tsigned:0;
\tfield:__u8 flags;\toffset:36;\tsize:1;\tsigned:0;
\tfield:__u8 failed;\toffset:37;\tsize:1;\tsigned:0;
""", '"%x:%llx:%s (%s)%s", REC->csbase, REC->rip, __print_hex(REC->insn, REC->len), '
     '__print_symbolic(REC->flags, { 0, "real" }, { (1 << 0) | (1 << 3), "prot64" }), '
     'REC->failed ? " failed" : ""')

NESTED_VMEXIT_INJECT = _format("kvm_nested_vmexit_inject", 903, """\
\tfield:__u32 exit_code;\toffset:8;\tsize:4;\tsigned:0;
\tfield:__u64 exit_info1;\toffset:16;\tsize:8;\tsigned:0;
\tfield:__u64 exit_info2;\toffset:24;\tsize:8;\tsigned:0;
\tfield:__u32 exit_int_info;\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u32 exit_int_info_err;\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u32 isa;\toffset:40;\tsize:4;\tsigned:0;
""", '"reason: %s ext_inf1: 0x%016llx ext_inf2: 0x%016llx ext_int: 0x%08x ext_int_err: 0x%08x", '
     '(REC->isa == 1) ? __print_symbolic(REC->exit_code & 0xffff, { 1, "EXTERNAL_INTERRUPT" }) : '
     '__print_symbolic(REC->exit_code, { 0x07c, "msr" }), REC->exit_info1, REC->exit_info2, REC->exit_int_info, '
     'REC->exit_int_info_err')

NESTED_VMEXIT_NEW = _format("kvm_nested_vmexit", 904, """\
\tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;
\tfield:unsigned long guest_rip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:u32 isa;\toffset:24;\tsize:4;\tsigned:0;
\tfield:u64 info1;\toffset:32;\tsize:8;\tsigned:0;
\tfield:u64 info2;\toffset:40;\tsize:8;\tsigned:0;
\tfield:u32 intr_info;\toffset:48;\tsize:4;\tsigned:0;
\tfield:u32 error_code;\toffset:52;\tsize:4;\tsigned:0;
\tfield:unsigned int vcpu_id;\toffset:56;\tsize:4;\tsigned:0;
\tfield:u64 requests;\toffset:64;\tsize:8;\tsigned:0;
""", '"vcpu %u reason %s rip 0x%lx info1 0x%016llx info2 0x%016llx intr_info 0x%08x error_code 0x%08x '
     'requests 0x%016llx", REC->vcpu_id, (REC->isa == 1) ? __print_symbolic(REC->exit_reason & 0xffff, '
     '{ 1, "EXTERNAL_INTERRUPT" }) : __print_symbolic(REC->exit_reason, { 0x07c, "msr" }), REC->guest_rip, '
     'REC->info1, REC->info2, REC->intr_info, REC->error_code, REC->requests')

NESTED_VMEXIT_OLD = _format("kvm_nested_vmexit", 904, """\tfield:__u64 rip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__u32 exit_code;\toffset:16;\tsize:4;\tsigned:0;
\tfield:__u64 exit_info1;\toffset:24;\tsize:8;\tsigned:0;
\tfield:__u64 exit_info2;\toffset:32;\tsize:8;\tsigned:0;
\tfield:__u32 exit_int_info;\toffset:40;\tsize:4;\tsigned:0;
\tfield:__u32 exit_int_info_err;\toffset:44;\tsize:4;\tsigned:0;
\tfield:__u32 isa;\toffset:48;\tsize:4;\tsigned:0;
""", '"rip: 0x%016llx reason: %s ext_inf1: 0x%016llx ext_inf2: 0x%016llx ext_int: 0x%08x ext_int_err: 0x%08x", '
     'REC->rip, __print_symbolic(REC->exit_code, { 0x07c, "msr" }), REC->exit_info1, REC->exit_info2, '
     'REC->exit_int_info, REC->exit_int_info_err')

_MMU_FIELDS = """\tfield:__u8 mmu_valid_gen;\toffset:8;\tsize:1;\tsigned:0;
\tfield:__u64 gfn;\toffset:16;\tsize:8;\tsigned:0;
\tfield:__u32 role;\toffset:24;\tsize:4;\tsigned:0;
\tfield:__u32 root_count;\toffset:28;\tsize:4;\tsigned:0;
\tfield:bool unsync;\toffset:32;\tsize:1;\tsigned:0;
"""
_MMU_PRINT = '"sp gen %u gfn %llx root %u %s", REC->mmu_valid_gen, REC->gfn, REC->root_count, ' \
             'REC->unsync ? "unsync" : "sync"'
MMU_GET_PAGE = _format("kvm_mmu_get_page", 905, _MMU_FIELDS + "\tfield:bool created;\toffset:33;\tsize:1;\tsigned:0;\n",
                       '"%s %s", "page", REC->created ? "new" : "existing"')
MMU_SYNC_PAGE = _format("kvm_mmu_sync_page", 906, _MMU_FIELDS, _MMU_PRINT)
MMU_PREPARE_ZAP_PAGE = _format("kvm_mmu_prepare_zap_page", 907, _MMU_FIELDS, _MMU_PRINT)

#: role words: level, cr4_pae, quadrant, direct, access, invalid, nxe, cr0_wp, smep, smap, smm bits in turn
ROLES = (0, 0x4, 0x1F, 0x60, 0x80, 0x700, 0x500, 0x800, 0x1000, 0x2000, 0x4000, 0x8000, 0xFF0000, 0x3000000,
         0xFFFFFFFF)


def _records(nested_old: bool) -> list[tuple[int, bytes]]:
    """(time, payload) of every case."""
    out: list[bytes] = []
    for n, (length, failed) in enumerate([(3, 0), (0, 0), (15, 1), (1, 0), (0, 1), (7, 0)]):
        insn = bytes((0x0F + 17 * i + n) & 0xFF for i in range(15))
        out.append(struct.pack("<HBBiQIB15sBBxx", 902, 0, 0, 9, 0xFFFFFFFF81000000 + n, 0x10 * n, length, insn,
                               0x9 if n % 2 else 0, failed))
    # (exit code, isa): VMX names, FAILED_VMENTRY bit, SVM names, EXIT_ERR (-1), unknown ISA
    codes = [(1, 1), (48, 1), (0x80000021, 1), (0x7C, 2), (0xFFFFFFFF, 2), (0x400, 2), (7, 3)]
    for n, (code, isa) in enumerate(codes):
        out.append(struct.pack("<HBBiIxxxxQQIII", 903, 0, 0, 9, code, 1 << (n * 9), 0xFFFF0000 + n, n, 0x80000000 >> n,
                               isa))
        if nested_old:
            out.append(struct.pack("<HBBiQIxxxxQQIII", 904, 0, 0, 9, 0xFFFFFFFFC0000000 + n, code, n, 7 * n, n << 8, n,
                                   isa))
        else:
            out.append(struct.pack("<HBBiIxxxxQIxxxxQQIIIxxxxQ", 904, 0, 0, 9, code, 0xFFFFFFFFC0000000 + n, isa, n,
                                   7 * n, n << 8, n, n % 4, 1 << n))
    for n, role in enumerate(ROLES):
        mmu = struct.pack("<HBBiBxxxxxxxQIIB", 0, 0, 0, 9, n, 0x1F000 + n, role, n * 3, n % 2)
        out.append(struct.pack("<H", 905) + mmu[2:] + bytes([n % 3 == 0]) + b"\0" * 6)
        out.append(struct.pack("<H", 906 + n % 2) + mmu[2:] + b"\0" * 7)
    return [(100 * (i + 1), p) for i, p in enumerate(out)]


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd is not installed")
@pytest.mark.parametrize("nested_old", [False, True], ids=["kernel-6.18", "kernel-4.x-nested-vmexit"])
def test_kvm_plugin_events_match_trace_cmd(tmp_path, nested_old: bool) -> None:
    pages = PageBuilder()
    for ts, payload in _records(nested_old):
        pages.add(ts, payload)
    kvm = [EMULATE_INSN, NESTED_VMEXIT_INJECT, NESTED_VMEXIT_OLD if nested_old else NESTED_VMEXIT_NEW]
    path = write_trace(tmp_path / "kvm.dat", pages, event_formats={
        "kvm": kvm, "kvmmmu": [MMU_GET_PAGE, MMU_SYNC_PAGE, MMU_PREPARE_ZAP_PAGE]})
    ours, theirs = our_text(path), trace_cmd_text(path)
    # the premise: the plugin's texts, not the print fmts'
    assert "reason EXTERNAL_INTERRUPT info1 " in theirs and "sp gfn 1f000 " in theirs
    assert ":ffffffff81000000: 0f 20 31\n" in theirs
    assert ours.splitlines() == theirs.splitlines()
