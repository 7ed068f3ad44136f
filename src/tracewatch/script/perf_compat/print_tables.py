"""The flag and symbol tables perf gives a script, read from an event's print fmt.

Before calling a script's handler for an event type, perf walks the parsed
print fmt arguments (``define_event_symbols`` in perf's trace-event-python.c)
and calls the script's ``define_flag_field`` / ``define_flag_value`` /
``define_symbolic_field`` / ``define_symbolic_value`` with every
``__print_flags(field, "delim", { value, "name" }, ...)`` and
``__print_symbolic(field, { value, "name" }, ...)`` table, so that
``Core.flag_str`` and ``Core.symbol_str`` can name values later.

``tracewatch.formats.printfmt`` does not expose its parse tree, so this module
has its own small parser for the argument list.  It reproduces what perf's walk
does, including two habits scripts can observe:

* the field a table belongs to is the last ``REC->field`` met so far in the
  walk, which visits the arguments' leaves in text order; that "current
  field" carries over from one event type to the next, as perf's C static does;
* every constant met outside a table (a number or a string, such as the
  ``"R"`` in ``prev_state ? __print_flags(...) : "R"``) is defined as the
  *flag* name of value 0 of the current field, the last one winning.  Constant
  sub-expressions of a top-level argument are first folded into one constant,
  as libtraceevent does.

A walk stops at a top-level ``__get_dynamic_array``/``__get_bitmask``-like
argument (perf returns early there), and an event whose print fmt cannot be
parsed defines nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from ...formats.event_format import EventFormat

__all__ = ["SymbolDefinition", "WalkState", "symbol_definitions"]

#: (name of the Core function perf calls, its arguments)
SymbolDefinition = tuple[str, tuple]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<chr>'(?:[^'\\]|\\.)*')
    | (?P<num>(?:0[xX][0-9a-fA-F]+|\d+)[uUlL]*)
    | (?P<id>[A-Za-z_]\w*)
    | (?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>?:,()\[\]{}.])
    )""",
    re.VERBOSE,
)

# Binary operators by C precedence, loosest first.
_LEVELS = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="),
           ("<<", ">>"), ("+", "-"), ("*", "/", "%")]

# Functions whose argument perf's walk does not enter; at the top level it stops there.
_STOP_FUNCTIONS = {
    "__get_dynamic_array", "__get_rel_dynamic_array", "__get_dynamic_array_len",
    "__get_rel_dynamic_array_len", "__get_bitmask", "__get_rel_bitmask", "__get_cpumask",
    "__get_rel_cpumask", "__get_sockaddr", "__get_sockaddr_rel",
}
_STRING_FUNCTIONS = {"__get_str", "__get_rel_str"}
_WALKED_FUNCTIONS = {"__print_hex", "__print_hex_str", "__print_array"}

# Names perf's eval_flag() knows when the kernel left an enum unexpanded in a table.
_KNOWN_FLAG_NAMES = {
    "HI_SOFTIRQ": 0, "TIMER_SOFTIRQ": 1, "NET_TX_SOFTIRQ": 2, "NET_RX_SOFTIRQ": 3,
    "BLOCK_SOFTIRQ": 4, "IRQ_POLL_SOFTIRQ": 5, "TASKLET_SOFTIRQ": 6, "SCHED_SOFTIRQ": 7,
    "HRTIMER_SOFTIRQ": 8, "RCU_SOFTIRQ": 9, "HRTIMER_NORESTART": 0, "HRTIMER_RESTART": 1,
}
_SIZEOF = {"char": 1, "short": 2, "int": 4, "long": 8, "u8": 1, "u16": 2, "u32": 4, "u64": 8}
_M64 = (1 << 64) - 1


class _Unparsable(Exception):
    """The print fmt uses something libtraceevent would reject: the event defines nothing."""


# Parse-tree nodes are tuples whose first item names the kind:
#   ("field", name)  ("atom", text)  ("op", op, left | None, right)  ("type", ctype, item)
#   ("flags", field_expr, delim, entries)  ("symbolic", field_expr, entries)
#   ("walk", children)  ("string",)  ("stop",)
# entries: [(value_text, name)], value_text as libtraceevent's arg_eval() leaves it.


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].isspace():
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise _Unparsable(f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _strtoull(text: str) -> int:
    """C strtoull(text, NULL, 0): leading number in base 16/8/10, 0 when none."""
    t = text.strip()
    m = re.match(r"0[xX]([0-9a-fA-F]+)|0([0-7]*)|([1-9][0-9]*)", t)
    if not m:
        return 0
    if m.group(1) is not None:
        return int(m.group(1), 16) & _M64
    if m.group(2) is not None:
        return int(m.group(2) or "0", 8) & _M64
    return int(m.group(3)) & _M64


def _signed64(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >> 63 else v


class _Parser:
    """Recursive descent over the arguments that follow the format string."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self, ahead: int = 0) -> tuple[str, str]:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else ("end", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        kind, tok = self.take()
        if tok != text or kind not in ("op",):
            raise _Unparsable(f"expected {text!r}, got {tok!r}")

    def arguments(self) -> list[tuple]:
        kind, _ = self.take()
        if kind != "str":
            raise _Unparsable("print fmt does not start with a string")
        while self.peek()[0] == "str":
            self.take()
        args: list[tuple] = []
        while self.peek()[1] == ",":
            self.take()
            args.append(_fold(self.expression()))
        if self.peek()[0] != "end":
            raise _Unparsable(f"unexpected {self.peek()[1]!r}")
        return args

    def expression(self) -> tuple:
        cond = self.binary(0)
        if self.peek()[1] != "?":
            return cond
        self.take()
        yes = self.expression()
        self.expect(":")
        no = self.expression()
        return ("op", "?", cond, ("op", ":", yes, no))

    def binary(self, level: int) -> tuple:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in _LEVELS[level]:
            op = self.take()[1]
            left = ("op", op, left, self.binary(level + 1))
        return left

    def unary(self) -> tuple:
        kind, tok = self.peek()
        if kind == "op" and tok in ("~", "!", "-", "+", "*", "&"):
            self.take()
            return ("op", tok, None, self.unary())
        node = self.primary()
        while self.peek()[1] in ("[", "->", "."):
            op = self.take()[1]
            if op == "[":
                index = self.expression()
                self.expect("]")
                node = ("op", "[", node, index)
            else:
                self.take()  # a member of a pointer cast: the value stays the field's
        return node

    def primary(self) -> tuple:
        kind, tok = self.take()
        if kind == "num":
            return ("atom", tok)
        if kind == "str":
            text = tok[1:-1]
            while self.peek()[0] == "str":
                text += self.take()[1][1:-1]
            return ("atom", text)
        if kind == "chr":
            body = tok[1:-1]
            return ("atom", str(ord(body[-1])) if body else "0")
        if kind == "id":
            if tok == "REC":
                self.expect("->")
                fkind, name = self.take()
                if fkind != "id":
                    raise _Unparsable("expected a field name after REC->")
                return ("field", name)
            if self.peek()[1] == "(":
                self.take()
                return self.function(tok)
            words = [tok]
            while self.peek()[0] == "id":  # "unsigned long" is one atom
                words.append(self.take()[1])
            return ("atom", " ".join(words))
        if tok == "(":
            if self.peek() == ("id", "REC") and self.peek(1)[1] == ")":  # "(REC)->field"
                self.take()
                self.take()
                self.i -= 1
                self.toks[self.i] = ("id", "REC")
                return self.primary()
            cast = self._cast_type()
            if cast is not None:
                return ("type", cast, self.unary())
            inner = self.expression()
            self.expect(")")
            return inner
        raise _Unparsable(f"unexpected {tok!r}")

    def _cast_type(self) -> str | None:
        """``(unsigned long)x``, ``(void *)x``: the type name, when this parenthesis is a cast."""
        j, words = 0, []
        while True:
            kind, tok = self.peek(j)
            if kind == "id" or tok == "*":
                words.append(tok)
                j += 1
                continue
            break
        if not words or self.peek(j)[1] != ")":
            return None
        after_kind, after = self.peek(j + 1)
        if not (after_kind in ("id", "num", "str", "chr") or after == "("):
            return None
        self.i += j + 1
        return " ".join(words)

    def _balanced_skip(self) -> None:
        """Skip a call's arguments up to its closing parenthesis."""
        depth = 1
        while depth:
            kind, tok = self.take()
            if kind == "end":
                raise _Unparsable("unbalanced parentheses")
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1

    def _call_arguments(self) -> list[tuple]:
        args = [self.expression()]
        while self.peek()[1] == ",":
            self.take()
            args.append(self.expression())
        self.expect(")")
        return args

    def function(self, name: str) -> tuple:
        if name in ("__print_flags", "__print_symbolic"):
            field_expr = self.expression()
            self.expect(",")
            delim = ""
            if name == "__print_flags" and self.peek()[0] == "str":
                delim = self.take()[1][1:-1]
                if self.peek()[1] == ",":
                    self.take()
            entries = self._table_entries()
            self.expect(")")
            if name == "__print_flags":
                return ("flags", field_expr, delim, entries)
            return ("symbolic", field_expr, entries)
        if name in _STRING_FUNCTIONS:
            self._balanced_skip()
            return ("string",)
        if name in _STOP_FUNCTIONS:
            self._balanced_skip()
            return ("stop",)
        if name in _WALKED_FUNCTIONS:
            return ("walk", [_fold(a) for a in self._call_arguments()])
        if name == "__builtin_expect":
            return self._call_arguments()[0]
        if name == "sizeof":
            words = []
            while self.peek()[1] != ")":
                words.append(self.take()[1])
            self.take()
            ctype = " ".join(w for w in words if w not in ("unsigned", "signed", "const"))
            return ("atom", str(8 if "*" in ctype else _SIZEOF.get(ctype, 8)))
        raise _Unparsable(f"function {name} not defined")

    def _table_entries(self) -> list[tuple[str, str]]:
        entries: list[tuple[str, str]] = []
        while self.peek()[1] == "{":
            self.take()
            value = self.expression()
            self.expect(",")
            label = self.expression()  # a string, or e.g. ((void *)0): arg_eval() text "0"
            self.expect("}")
            entries.append((_entry_text(value), _entry_text(label)))
            if self.peek()[1] != ",":
                break
            self.take()
        return entries


_BINARY = {
    "|": lambda a, b: a | b, "||": lambda a, b: int(bool(a or b)), "&": lambda a, b: a & b,
    "&&": lambda a, b: int(bool(a and b)), "^": lambda a, b: a ^ b,
    "<": lambda a, b: int(a < b), "<=": lambda a, b: int(a <= b), ">": lambda a, b: int(a > b),
    ">=": lambda a, b: int(a >= b), "==": lambda a, b: int(a == b), "!=": lambda a, b: int(a != b),
    "<<": lambda a, b: a << (b & 63), ">>": lambda a, b: (a & _M64) >> (b & 63),
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a // b if b else None, "%": lambda a, b: a % b if b else None,
}


def _fold(node: tuple) -> tuple:
    """libtraceevent's consolidate_op_arg: an operator over two constants becomes one constant."""
    if node[0] != "op" or node[2] is None:
        return node
    left, right = _fold(node[2]), _fold(node[3])
    fn = _BINARY.get(node[1])
    if left[0] == "atom" and right[0] == "atom" and fn is not None:
        value = fn(_strtoull(left[1]), _strtoull(right[1]))
        if value is not None:
            return ("atom", str(_signed64(value)))
    return ("op", node[1], left, right)


def _number(node: tuple) -> int:
    """libtraceevent's arg_num_eval: the constant value of a table entry."""
    kind = node[0]
    if kind == "atom":
        return _signed64(_strtoull(node[1]))
    if kind == "type":
        value = _number(node[2]) & _M64
        base = node[1].replace("unsigned ", "").replace("signed ", "").strip()
        mask = {"char": 0xFF, "u8": 0xFF, "s8": 0xFF, "short": 0xFFFF, "u16": 0xFFFF, "s16": 0xFFFF,
                "int": 0xFFFFFFFF, "u32": 0xFFFFFFFF, "s32": 0xFFFFFFFF}.get(base, _M64)
        return _signed64(value & mask)
    if kind == "op":
        op, left, right = node[1], node[2], node[3]
        if left is None:
            operand = _number(right)
            if op == "~":
                return _signed64(~operand)
            if op == "-":
                return _signed64(-operand)
            if op == "+":
                return operand
            if op == "!":
                return int(not operand)
            raise _Unparsable(f"operator {op!r} in a table entry")
        fn = _BINARY.get(op)
        value = fn(_number(left), _number(right)) if fn is not None else None
        if value is None:
            raise _Unparsable(f"operator {op!r} in a table entry")
        return _signed64(value)
    raise _Unparsable("a table entry is not a constant")


def _entry_text(node: tuple) -> str:
    """libtraceevent's arg_eval: an entry value as text (the atom, or a decimal)."""
    while node[0] == "type":
        node = node[2]
    if node[0] == "atom":
        return node[1]
    return str(_number(node))


def _eval_flag(text: str) -> int:
    """perf's eval_flag: table entry text -> the value passed to define_*_value."""
    if text[:1].isdigit():
        return _signed64(_strtoull(text))
    return _KNOWN_FLAG_NAMES.get(text, 0)


@dataclass
class WalkState:
    """What perf's walk keeps between event types: the last field name it met."""

    current_field: str | None = None


def symbol_definitions(fmt: EventFormat, state: WalkState | None = None) -> list[SymbolDefinition]:
    """The ``define_*`` calls perf makes for event type ``fmt``, in perf's order.

    ``state`` carries the current field from one event type to the next (a
    fresh one when None).  Events without tables or constants give [].
    """
    state = state if state is not None else WalkState()
    text = fmt.print_fmt
    if not text or text.count(",") == 0:
        return []
    try:
        args = _Parser(_tokens(text)).arguments()
    except (_Unparsable, RecursionError):
        return []
    event_name = f"{fmt.system}__{fmt.name}"
    out: list[SymbolDefinition] = []
    for arg in args:
        if arg[0] == "stop":
            break
        out.extend(_walk(arg, event_name, state))
    return out


def _walk(node: tuple, event_name: str, state: WalkState) -> Iterator[SymbolDefinition]:
    kind = node[0]
    if kind == "field":
        state.current_field = node[1]
    elif kind == "atom":
        if state.current_field is not None:
            yield ("define_flag_value", (event_name, state.current_field, 0, node[1]))
    elif kind == "op":
        if node[2] is not None:
            yield from _walk(node[2], event_name, state)
        yield from _walk(node[3], event_name, state)
    elif kind == "type":
        yield from _walk(node[2], event_name, state)
    elif kind == "walk":
        for child in node[1]:
            yield from _walk(child, event_name, state)
    elif kind in ("flags", "symbolic"):
        yield from _walk(node[1], event_name, state)
        field = state.current_field
        if field is None:
            return
        if kind == "flags":
            yield ("define_flag_field", (event_name, field, node[2]))
            for value, label in node[3]:
                yield ("define_flag_value", (event_name, field, _eval_flag(value), label))
        else:
            yield ("define_symbolic_field", (event_name, field))
            for value, label in node[2]:
                yield ("define_symbolic_value", (event_name, field, _eval_flag(value), label))
