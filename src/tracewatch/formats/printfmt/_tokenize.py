"""Print fmt text -> tokens, by libtraceevent's ``__read_token`` rules."""

from __future__ import annotations

_T_ERROR, _T_NONE, _T_SPACE, _T_NEWLINE, _T_OP, _T_DELIM, _T_ITEM, _T_DQUOTE, _T_SQUOTE = range(9)


def _isprint(ch: str) -> bool:
    return " " <= ch <= "~"


def _char_type(ch: str) -> int:
    if ch == "":
        return _T_NONE
    if ch == "\n":
        return _T_NEWLINE
    if ch in " \t\r\v\f":
        return _T_SPACE
    if ch.isascii() and (ch.isalnum() or ch == "_"):
        return _T_ITEM
    if ch == "'":
        return _T_SQUOTE
    if ch == '"':
        return _T_DQUOTE
    if not _isprint(ch):
        return _T_NONE
    if ch in "(),":
        return _T_DELIM
    return _T_OP


class _Tokenizer:
    """Splits print fmt text into (type, text) tokens the way libtraceevent does.

    Strings keep their backslash escapes (``parse_arg_string`` interprets them
    later) and adjacent string literals are joined.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _getc(self) -> str:
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def read_raw(self) -> tuple[int, str]:
        ch = self._getc()
        kind = _char_type(ch)
        if kind == _T_NONE:
            return _T_NONE, ""
        if kind in (_T_NEWLINE, _T_DELIM):
            return kind, ch
        if kind == _T_OP:
            buf = ch
            if ch == "-" and self._peek() == ">":
                return kind, buf + self._getc()
            if ch in "-+|&><":
                if self._peek() == ch:
                    buf += self._getc()
                    if ch not in "<>":
                        return kind, buf
                if self._peek() == "=":
                    buf += self._getc()
                return kind, buf
            if ch in "!=":
                if self._peek() == "=":
                    buf += self._getc()
            return kind, buf
        if kind in (_T_DQUOTE, _T_SQUOTE):
            return self._read_quoted(kind, ch)
        buf = ch
        while _char_type(self._peek()) == kind:
            buf += self._getc()
        return kind, buf

    def _read_quoted(self, kind: int, quote: str) -> tuple[int, str]:
        # Mirrors the C loop: a quote preceded by a backslash does not end the
        # string; a non-printable character (other than newline) does.
        out: list[str] = []
        ch = quote
        while True:
            while True:
                last = ch
                ch = self._getc()
                out.append(ch)
                if ch == "":
                    break
                if not ((ch != quote and _isprint(ch)) or last == "\\" or ch == "\n"):
                    break
            out.pop()  # the closing quote (or the character that stopped us)
            if ch == "":
                return _T_NONE, "".join(out)
            if kind == _T_DQUOTE:
                save = self.pos
                nxt = self._getc()
                while nxt != "" and nxt in " \t\r\v\f\n":
                    nxt = self._getc()
                if nxt == '"':
                    ch = nxt
                    continue
                self.pos = save
            return kind, "".join(out)

    def read(self) -> tuple[int, str]:
        """Next token, skipping spaces (newlines are tokens)."""
        while True:
            kind, tok = self.read_raw()
            if kind != _T_SPACE:
                return kind, tok

    def read_item(self) -> tuple[int, str]:
        """Next token, skipping spaces and newlines."""
        while True:
            kind, tok = self.read_raw()
            if kind not in (_T_SPACE, _T_NEWLINE):
                return kind, tok
