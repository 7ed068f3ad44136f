"""The shared main of the tools (tools/_command.py): parse, split at ``--``, the error policy."""

from __future__ import annotations

import pytest

from tracewatch.errors import TraceFormatError, UsageError
from tracewatch.tools._command import split_double_dash, tool_main, tool_parser

EXAMPLES = "examples:\n  tracewatch demo -n 3 -- ls -l   # a demo\n"


def _parser():
    p = tool_parser("demo", "A demo tool.", EXAMPLES)
    p.add_argument("-n", type=int, default=1)
    return p


def test_the_words_after_the_first_double_dash_are_the_command():
    seen = {}

    def body(args):
        seen.update(n=args.n, command=args.command)
        return 0

    assert tool_main(_parser(), body, ["-n", "3", "--", "ls", "--", "-n"], command=True) == 0
    assert seen == {"n": 3, "command": ["ls", "--", "-n"]}
    assert tool_main(_parser(), body, ["-n", "4"], command=True) == 0
    assert seen == {"n": 4, "command": []}
    assert split_double_dash(["a", "--"]) == (["a"], [])


def test_without_command_a_double_dash_is_argparse_s(capsys):
    with pytest.raises(SystemExit) as end:
        tool_main(_parser(), lambda args: 0, ["--", "ls"])
    assert end.value.code == 2 and "unrecognized arguments: -- ls" in capsys.readouterr().err


def test_errors_a_user_can_act_on_are_one_line_and_status_2(capsys):
    def misuse(args):
        raise UsageError("-n and -m go together")

    assert tool_main(_parser(), misuse, []) == 2
    assert capsys.readouterr().err == "tracewatch: error: -n and -m go together\n"

    def damaged(args):
        raise TraceFormatError("truncated", path="x.dat", hint="--keep-going skips damaged pages")

    assert tool_main(_parser(), damaged, []) == 2
    assert capsys.readouterr().err == "tracewatch: error: x.dat: truncated\nhint: --keep-going skips damaged pages\n"


def test_ctrl_c_is_130_and_a_bug_keeps_its_traceback():
    def interrupted(args):
        raise KeyboardInterrupt

    assert tool_main(_parser(), interrupted, []) == 130
    with pytest.raises(ZeroDivisionError):
        tool_main(_parser(), lambda args: 1 // 0, [])


def test_help_ends_with_the_examples(capsys):
    with pytest.raises(SystemExit):
        tool_main(_parser(), lambda args: 0, ["--help"])
    assert capsys.readouterr().out.endswith("\n" + EXAMPLES)
