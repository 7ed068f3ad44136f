"""Print fmt arguments -> ``_Arg`` trees, built with libtraceevent's algorithm.

Also the constant evaluation the parser needs (flag tables, ``sizeof``) and
libtraceevent's casts (``_cast``), which the compiler applies.
"""

from __future__ import annotations

from ..event_format import EventFormat, Field
from ._tokenize import _T_DELIM, _T_DQUOTE, _T_ERROR, _T_ITEM, _T_NEWLINE, _T_NONE, _T_OP, _T_SQUOTE, _Tokenizer


class _ParseFailure(Exception):
    """libtraceevent would mark the event TEP_EVENT_FL_FAILED."""


_M64 = (1 << 64) - 1

# Node kinds; the numbers are libtraceevent's enum tep_print_arg_type, which it
# prints in "ARG TYPE NOT FIELD BUT %d".
NULL, ATOM, FIELD, FLAGS, SYMBOL, HEX, INT_ARRAY, TYPE, STRING, BSTRING = range(10)
DYNAMIC_ARRAY, OP, FUNC, BITMASK, DYNAMIC_ARRAY_LEN, HEX_STR, CPUMASK = range(10, 17)


class _Arg:
    """One node of a print argument (libtraceevent's struct tep_print_arg).

    Nodes are mutable and copied into one another while the parser rotates
    operators, exactly as the C code copies structs, so attributes are
    generic: ``text`` (atom text, field or type name, operator), ``field``
    (the resolved Field), ``left``/``right``/``item`` (children),
    ``extra`` (kind-specific: flag/symbol tables, delimiter, sizes).
    """

    __slots__ = ("kind", "text", "field", "left", "right", "prio", "extra")

    def __init__(self, kind: int = NULL, text: str = "") -> None:
        self.kind = kind
        self.text = text
        self.field: Field | None = None
        self.left: _Arg | None = None
        self.right: _Arg | None = None
        self.prio = 0
        self.extra: tuple = ()

    def copy_from(self, other: "_Arg") -> None:
        for name in _Arg.__slots__:
            setattr(self, name, getattr(other, name))

    def clone(self) -> "_Arg":
        new = _Arg()
        new.copy_from(self)
        return new

    def __repr__(self) -> str:  # for debugging parse trees
        if self.kind == OP:
            return f"({self.left!r} {self.text} {self.right!r})"
        if self.kind == TYPE:
            return f"(({self.text}){self.left!r})"
        return f"<{self.kind}:{self.text}>"


def _op_prio(op: str) -> int:
    """libtraceevent's get_op_prio (lower binds tighter; -1: unknown)."""
    if len(op) == 1:
        return {"~": 4, "!": 4, "*": 6, "/": 6, "%": 6, "+": 7, "-": 7, "<": 9, ">": 9,
                "&": 11, "^": 12, "|": 13, "?": 16}.get(op, -1)
    return {"++": 3, "--": 3, ">>": 8, "<<": 8, ">=": 9, "<=": 9, "==": 10, "!=": 10,
            "&&": 14, "||": 15}.get(op, -1)


_BINARY_OPS = frozenset(">> << & | && || - + * ^ / % < > <= >= == !=".split())


def _strtoull(text: str) -> int:
    """C strtoull(text, NULL, 0) as a u64 (stops at the first bad character)."""
    s = text.lstrip(" \t\n\r\v\f")
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    base = 10
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        base, s = 16, s[2:]
    elif s[:1] == "0":
        base = 8
    digits = "0123456789abcdef"[:base]
    n = 0
    for ch in s:
        d = digits.find(ch.lower())
        if d < 0:
            break
        n = n * base + d
    if n > _M64:
        n = _M64
    return (-n if neg else n) & _M64


def _to_signed64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class _ArgParser:
    """Builds the argument list of one print fmt (event_read_print and helpers)."""

    def __init__(self, fmt: EventFormat, long_size: int) -> None:
        self.fmt = fmt
        self.long_size = long_size
        self.tok: _Tokenizer
        self._event_fields = {f.name: f for f in fmt.event_fields}

    # field lookups: tep_find_any_field / tep_find_field
    def any_field(self, name: str) -> Field | None:
        return self.fmt.field(name)

    def event_field(self, name: str) -> Field | None:
        return self._event_fields.get(name)

    def parse(self, text: str) -> tuple[str, list[_Arg]]:
        """The format string (escapes kept) and the argument trees."""
        self.tok = _Tokenizer(text)
        kind, fmt_text = self.tok.read()
        if kind != _T_DQUOTE:
            raise _ParseFailure("print fmt does not start with a string")
        while True:
            kind, tok = self.tok.read_item()
            if kind == _T_NONE:
                return fmt_text, []
            if kind == _T_DQUOTE:
                fmt_text += tok
                continue
            break
        if kind != _T_DELIM or tok != ",":
            raise _ParseFailure(f"expected ',' after the format string, got {tok!r}")
        return fmt_text, self._read_args()

    def _read_args(self) -> list[_Arg]:
        args: list[_Arg] = []
        kind = _T_ERROR
        while True:
            if kind == _T_NEWLINE:
                kind, tok = self.tok.read_item()
                if kind == _T_NONE:
                    break
                continue
            arg = _Arg()
            kind, tok = self.process_arg(arg)
            if kind == _T_ERROR:
                raise _ParseFailure("bad argument")
            args.append(arg)
            if kind == _T_OP:
                kind, tok = self.process_op(arg, tok)
                _consolidate(arg)
                if kind == _T_NONE:
                    break
                continue
            if kind == _T_DELIM and tok == ",":
                continue
            break
        return args

    # --- the recursive descent, one method per libtraceevent process_* ---

    def process_arg(self, arg: _Arg) -> tuple[int, str]:
        kind, tok = self.tok.read()
        return self.process_arg_token(arg, kind, tok)

    def process_arg_token(self, arg: _Arg, kind: int, tok: str) -> tuple[int, str]:
        if kind == _T_ITEM:
            if tok == "REC":
                return self.process_entry(arg)
            atom = tok
            kind, tok = self.tok.read_item()
            if kind == _T_DELIM and tok == "(":
                return self.process_function(arg, atom)
            while kind == _T_ITEM:  # "unsigned long"
                atom += " " + tok
                kind, tok = self.tok.read_item()
            arg.kind, arg.text = ATOM, atom
            return kind, tok
        if kind == _T_SQUOTE:
            arg.kind, arg.text = ATOM, str(ord(tok[0]) if tok else 0)
            return self.tok.read_item()
        if kind == _T_DQUOTE:
            arg.kind, arg.text = ATOM, tok
            return self.tok.read_item()
        if kind == _T_DELIM and tok == "(":
            return self.process_paren(arg)
        if kind in (_T_DELIM, _T_OP):  # a prefix operator
            arg.kind, arg.text, arg.left = OP, tok, None
            return self.process_op(arg, tok)
        raise _ParseFailure(f"unexpected token {tok!r}")

    def process_entry(self, arg: _Arg) -> tuple[int, str]:
        kind, tok = self.tok.read_item()
        if kind == _T_DELIM and tok == ")":  # "(REC)->field"
            return _T_ITEM, ")"
        if kind != _T_OP or tok != "->":
            raise _ParseFailure("expected '->' after REC")
        kind, name = self.tok.read()
        if kind != _T_ITEM:
            raise _ParseFailure("expected a field name after REC->")
        arg.kind, arg.text, arg.field = FIELD, name, self.any_field(name)
        return self.tok.read()

    def process_paren(self, arg: _Arg) -> tuple[int, str]:
        kind, tok = self.process_arg(arg)
        if kind == _T_OP:
            kind, tok = self.process_op(arg, tok)
        if kind == _T_ITEM and tok == ")":
            return self.process_entry(arg)
        if kind != _T_DELIM or tok != ")":
            raise _ParseFailure("expected ')'")
        kind, tok = self.tok.read_item()
        if kind in (_T_ITEM, _T_DQUOTE, _T_SQUOTE) or (kind == _T_DELIM and tok == "("):
            # "(type) item": a cast
            if arg.kind != ATOM:
                raise _ParseFailure("a cast needs a type name")
            item = _Arg()
            arg.kind, arg.left = TYPE, item  # arg.text keeps the type name
            return self.process_arg_token(item, kind, tok)
        return kind, tok

    def process_op(self, arg: _Arg, token: str) -> tuple[int, str]:
        right: _Arg | None = None
        if arg.kind == OP and arg.left is None:
            if len(token) != 1 or token not in "~!+-":
                raise _ParseFailure(f"bad prefix operator {token!r}")
            arg.left = _Arg(NULL)
            right = _Arg()
            arg.right = right
            kind, tok = self.process_arg(right)
        elif token == "?":
            left = arg.clone()
            arg.kind, arg.text, arg.left, arg.right, arg.prio = OP, "?", left, None, 0
            kind, tok = self.process_cond(arg)
        elif token in _BINARY_OPS:
            left = arg.clone()
            arg.kind, arg.text, arg.left, arg.right = OP, token, left, None
            arg.prio = 0 if left.kind == NULL else _op_prio(token)
            kind, tok = self.tok.read_item()
            if token == "*" and kind == _T_DELIM and tok == ")":  # "(type *)"
                if left.kind != ATOM:
                    raise _ParseFailure("bad pointer type")
                left.text += " *"
                arg.copy_from(left)
                return kind, tok
            right = _Arg()
            kind, tok = self.process_arg_token(right, kind, tok)
            if right.kind == OP and _op_prio(arg.text) < _op_prio(right.text):
                # libtraceevent rotates even when `right` was parenthesised
                arg.right = right.left
                saved = arg.clone()
                arg.copy_from(right)
                right.copy_from(saved)
                arg.left = right
            else:
                arg.right = right
        elif token == "[":
            left = arg.clone()
            arg.kind, arg.text, arg.left, arg.right, arg.prio = OP, "[", left, None, 0
            kind, tok = self.process_array(arg)
        else:
            raise _ParseFailure(f"unknown operator {token!r}")

        if kind == _T_OP and tok != ":":
            if _op_prio(tok) > arg.prio:
                return self.process_op(arg, tok)
            if right is None:
                raise _ParseFailure(f"cannot place operator {tok!r}")
            return self.process_op(right, tok)
        return kind, tok

    def process_cond(self, top: _Arg) -> tuple[int, str]:
        colon, left, right = _Arg(OP), _Arg(), _Arg()
        colon.left, colon.right = left, right
        kind, tok = self.process_arg(left)
        while kind == _T_OP and tok != ":":
            kind, tok = self.process_op(left, tok)
        if kind != _T_OP or tok != ":":
            raise _ParseFailure("expected ':'")
        colon.text = ":"
        kind, tok = self.process_arg(right)
        top.right = colon
        return kind, tok

    def process_array(self, top: _Arg) -> tuple[int, str]:
        index = _Arg()
        kind, tok = self.process_arg(index)
        if kind != _T_OP or tok != "]":
            raise _ParseFailure("expected ']'")
        top.right = index
        return self.tok.read_item()

    def _expect(self, want_kind: int, want: str | None = None, item: bool = False) -> str:
        kind, tok = self.tok.read_item() if item else self.tok.read()
        if kind != want_kind or (want is not None and tok != want):
            raise _ParseFailure(f"expected {want or 'a name'!r}, got {tok!r}")
        return tok

    def _field_arg(self, first_only: bool = False) -> tuple[_Arg, int, str]:
        """process_field_arg: one expression, operators included."""
        arg = _Arg()
        kind, tok = self.process_arg(arg)
        while kind == _T_OP:
            kind, tok = self.process_op(arg, tok)
        return arg, kind, tok

    def _delimited(self, delim: str) -> _Arg:
        """alloc_and_process_delim: an expression ended by `delim`."""
        arg = _Arg()
        kind, tok = self.process_arg(arg)
        if kind == _T_OP:
            kind, tok = self.process_op(arg, tok)
            _consolidate(arg)
        if kind != _T_DELIM or tok != delim:
            raise _ParseFailure(f"expected {delim!r}")
        return arg

    def _flag_list(self, tok: str) -> tuple[tuple[tuple[str, str], ...], int, str]:
        """process_fields: `{ value, "name" }, ...` as (value text, name) pairs."""
        entries: list[tuple[str, str]] = []
        while True:
            kind, tok = self.tok.read_item()
            if kind != _T_OP or tok != "{":
                break
            value = _Arg()
            kind, tok = self.process_arg(value)
            if kind == _T_OP:
                kind, tok = self.process_op(value, tok)
            if kind != _T_DELIM or tok != ",":
                raise _ParseFailure("expected ',' in a flag entry")
            value_text = _arg_eval_text(value)
            name = _Arg()
            kind, tok = self.process_arg(name)
            if kind != _T_OP or tok != "}":
                raise _ParseFailure("expected '}' in a flag entry")
            entries.append((value_text, _arg_eval_text(name)))
            kind, tok = self.tok.read_item()
            if not (kind == _T_DELIM and tok == ","):
                break
        return tuple(entries), kind, tok

    def process_function(self, arg: _Arg, name: str) -> tuple[int, str]:
        if name in ("__print_flags", "__print_symbolic"):
            value, kind, tok = self._field_arg()
            if kind != _T_DELIM or tok != ",":
                raise _ParseFailure(f"{name}: expected ','")
            delim = None
            if name == "__print_flags":
                kind, tok = self.tok.read_item()
                if kind in (_T_ITEM, _T_DQUOTE, _T_SQUOTE):
                    delim = tok
                    kind, tok = self.tok.read_item()
                if kind != _T_DELIM or tok != ",":
                    raise _ParseFailure(f"{name}: expected ','")
            entries, kind, tok = self._flag_list(tok)
            if kind != _T_DELIM or tok != ")":
                raise _ParseFailure(f"{name}: expected ')'")
            arg.kind = FLAGS if name == "__print_flags" else SYMBOL
            arg.left = value
            arg.extra = (delim, entries)
            return self.tok.read_item()
        if name in ("__print_hex", "__print_hex_str"):
            arg.kind = HEX if name == "__print_hex" else HEX_STR
            arg.left = self._delimited(",")
            arg.right = self._delimited(")")
            return self.tok.read_item()
        if name == "__print_array":
            arg.kind = INT_ARRAY
            arg.left = self._delimited(",")
            count = self._delimited(",")
            el_size = self._delimited(")")
            arg.extra = (count, el_size)
            return self.tok.read_item()
        if name in ("__get_str", "__get_rel_str", "__get_bitmask", "__get_rel_bitmask",
                    "__get_cpumask", "__get_rel_cpumask"):
            field_name = self._expect(_T_ITEM)
            self._expect(_T_DELIM, ")")
            arg.kind = STRING if "str" in name else (BITMASK if "bitmask" in name else CPUMASK)
            arg.text = field_name
            arg.field = self.any_field(field_name)
            return self.tok.read()
        if name in ("__get_dynamic_array", "__get_rel_dynamic_array", "__get_sockaddr",
                    "__get_sockaddr_rel"):
            kind, field_name = self.tok.read()
            field = self.event_field(field_name) if kind == _T_ITEM else None
            if field is None:
                raise _ParseFailure(f"{name}: unknown field {field_name!r}")
            self._expect(_T_DELIM, ")")
            arg.kind, arg.text, arg.field = DYNAMIC_ARRAY, field_name, field
            kind, tok = self.tok.read_item()
            if kind == _T_OP and tok == "[":
                # libtraceevent rejects an index here (its test is inverted)
                raise _ParseFailure(f"{name}(...)[index] is not supported by libtraceevent")
            return kind, tok
        if name in ("__get_dynamic_array_len", "__get_rel_dynamic_array_len"):
            field_name = self._expect(_T_ITEM)
            field = self.event_field(field_name)
            if field is None:
                raise _ParseFailure(f"{name}: unknown field {field_name!r}")
            self._expect(_T_DELIM, ")")
            arg.kind, arg.text, arg.field = DYNAMIC_ARRAY_LEN, field_name, field
            return self.tok.read()
        if name == "__builtin_expect":
            kind, tok = self.process_arg(arg)
            if kind != _T_DELIM or not tok.startswith(","):
                raise _ParseFailure("__builtin_expect: expected ','")
            self._expect(_T_ITEM)
            self._expect(_T_DELIM, ")")
            return self.tok.read_item()
        if name == "sizeof":
            return self.process_sizeof(arg)
        raise _ParseFailure(f"function {name} not defined")

    def process_sizeof(self, arg: _Arg) -> tuple[int, str]:
        kind, tok = self.tok.read_item()
        arg.kind = ATOM
        token_has_paren = False
        if tok == "unsigned":
            kind, tok = self.tok.read_item()
            if kind != _T_ITEM:
                token_has_paren = True
        if token_has_paren or tok == "int":
            arg.text = "4"
        elif tok == "long":
            kind, tok = self.tok.read_item()
            if tok == "long":
                arg.text = "8"
            else:
                arg.text = str(self.long_size)
                token_has_paren = True
        elif tok in ("__u64", "u64", "__s64", "s64"):
            arg.text = "8"
        elif tok in ("__u32", "u32", "__s32", "s32"):
            arg.text = "4"
        elif tok in ("__u16", "u16", "__s16", "s16"):
            arg.text = "2"
        elif tok in ("__u8", "u8", "__8", "s8"):
            arg.text = "1"
        elif tok == "REC":
            self._expect(_T_OP, "->", item=True)
            field = self.any_field(self._expect(_T_ITEM))
            if field is None or field.is_array:
                raise _ParseFailure("sizeof: unsupported field")
            arg.text = str(field.size)
        else:
            raise _ParseFailure(f"sizeof({tok}) is not supported")
        if not token_has_paren:
            kind, tok = self.tok.read_item()
        if kind != _T_DELIM or tok != ")":
            raise _ParseFailure("sizeof: expected ')'")
        return self.tok.read_item()


def _consolidate(arg: _Arg) -> None:
    """consolidate_op_arg: fold operators whose operands are both atoms."""
    if arg.kind != OP:
        return
    if arg.left is not None:
        _consolidate(arg.left)
    if arg.right is not None:
        _consolidate(arg.right)
    if arg.left is None or arg.right is None or arg.left.kind != ATOM or arg.right.kind != ATOM:
        return
    a, b, op = _strtoull(arg.left.text), _strtoull(arg.right.text), arg.text
    if op in ("/", "%") and b == 0:
        raise _ParseFailure("division by zero in a constant")
    table = {
        ">>": lambda: a >> (b & 63), ">=": lambda: int(a >= b), ">": lambda: int(a > b),
        "<<": lambda: a << (b & 63), "<=": lambda: int(a <= b), "<": lambda: int(a < b),
        "&&": lambda: int(bool(a and b)), "&": lambda: a & b,
        "||": lambda: int(bool(a or b)), "|": lambda: a | b,
        "-": lambda: a - b, "+": lambda: a + b, "*": lambda: a * b, "^": lambda: a ^ b,
        "/": lambda: a // b, "%": lambda: a % b, "==": lambda: int(a == b), "!=": lambda: int(a != b),
    }
    fold = table.get(op) or table.get(op[:1])
    if fold is None:
        return
    arg.kind, arg.text = ATOM, str(_to_signed64(fold() & _M64))
    arg.left = arg.right = None


def _arg_num_eval(arg: _Arg) -> int | None:
    """arg_num_eval: constant value of a flag/symbol table entry (None: not constant)."""
    if arg.kind == ATOM:
        return _to_signed64(_strtoull(arg.text))
    if arg.kind == TYPE:
        v = _arg_num_eval(arg.left)
        return None if v is None else _to_signed64(_cast(v & _M64, arg.text, False))
    if arg.kind != OP:
        return None
    op = arg.text
    if op == "~":
        r = _arg_num_eval(arg.right)
        return None if r is None else ~r
    if op[0] in "-+" and arg.left is not None and arg.left.kind == NULL:
        left: int | None = 0
    else:
        left = _arg_num_eval(arg.left) if arg.left is not None else None
    if left is None:
        return None
    right = _arg_num_eval(arg.right) if arg.right is not None else None
    if right is None:
        return None
    ops = {
        "|": lambda: left | right, "||": lambda: int(bool(left or right)),
        "&": lambda: left & right, "&&": lambda: int(bool(left and right)),
        "<": lambda: int(left < right), "<<": lambda: left << (right & 63), "<=": lambda: int(left <= right),
        ">": lambda: int(left > right), ">>": lambda: left >> (right & 63), ">=": lambda: int(left >= right),
        "==": lambda: int(left == right), "!=": lambda: int(left != right),
        "-": lambda: left - right, "+": lambda: left + right,
    }
    fn = ops.get(op)
    return None if fn is None else _to_signed64(fn() & _M64)


def _arg_eval_text(arg: _Arg) -> str:
    """arg_eval: the text a flag/symbol entry keeps (atom text or a decimal)."""
    while arg.kind == TYPE:
        arg = arg.left
    if arg.kind == ATOM:
        return arg.text
    if arg.kind == OP:
        v = _arg_num_eval(arg)
        if v is not None:
            return str(v)
    raise _ParseFailure("flag entry is not a constant")


# Names libtraceevent knows in flag tables when the kernel left them unexpanded.
_KNOWN_FLAGS = {
    "HI_SOFTIRQ": 0, "TIMER_SOFTIRQ": 1, "NET_TX_SOFTIRQ": 2, "NET_RX_SOFTIRQ": 3,
    "BLOCK_SOFTIRQ": 4, "IRQ_POLL_SOFTIRQ": 5, "TASKLET_SOFTIRQ": 6, "SCHED_SOFTIRQ": 7,
    "HRTIMER_SOFTIRQ": 8, "RCU_SOFTIRQ": 9, "HRTIMER_NORESTART": 0, "HRTIMER_RESTART": 1,
}


def _eval_flag(text: str) -> int:
    """eval_flag: value of a flag table entry as a signed 64-bit number (-1: unknown)."""
    if text[:1].isdigit():
        return _to_signed64(_strtoull(text))
    return _KNOWN_FLAGS.get(text, -1)


def _cast(val: int, ctype: str, pointer: bool) -> int:
    """eval_type_str: libtraceevent casts mask to the type's size, never sign-extend."""
    if len(ctype) < 2:
        return val
    if pointer:
        if not ctype.endswith("*"):
            return val
        ctype = ctype[:-2]
        if len(ctype) < 2:
            return val
    elif ctype.endswith("*"):
        return val
    if ctype.startswith("struct"):
        return val
    if ctype in ("u8", "s8"):
        return val & 0xFF
    if ctype in ("u16", "s16"):
        return val & 0xFFFF
    if ctype in ("u32", "s32"):
        return val & 0xFFFFFFFF
    if ctype.startswith("unsigned "):
        ctype = ctype[9:]
    return val & {"char": 0xFF, "short": 0xFFFF, "int": 0xFFFFFFFF}.get(ctype, _M64)
