"""C printf for one conversion, and the texts of libtraceevent's ``%p`` extensions."""

from __future__ import annotations

class _CSpec:
    """One printf conversion ``%[flags][width][.prec][length]conv`` (width/prec may be '*')."""

    __slots__ = ("flags", "width", "prec", "conv", "star_is_width", "star_is_prec")

    def __init__(self, spec: str) -> None:
        i, n = 1, len(spec)
        flags = ""
        while i < n and spec[i] in "-+ #0":
            flags += spec[i]
            i += 1
        self.star_is_width = self.star_is_prec = False
        width = ""
        if i < n and spec[i] == "*":
            self.star_is_width = True
            i += 1
        while i < n and spec[i].isdigit():
            width += spec[i]
            i += 1
        prec: int | None = None
        if i < n and spec[i] == ".":
            i += 1
            if i < n and spec[i] == "*":
                self.star_is_prec = True
                i += 1
            digits = ""
            while i < n and spec[i].isdigit():
                digits += spec[i]
                i += 1
            prec = int(digits or "0")
        self.flags = flags
        self.width = int(width or "0")
        self.prec = prec
        self.conv = spec[-1]

    def resolve(self, star: int | None) -> tuple[str, int, int | None]:
        """(flags, width, precision) once a '*' value is known."""
        flags, width, prec = self.flags, self.width, self.prec
        if star is not None:
            star = _to_signed32(star)
            if self.star_is_width:
                if star < 0:
                    flags += "-"
                    star = -star
                width = star
            elif self.star_is_prec:
                prec = star if star >= 0 else None
        return flags, width, prec


def _to_signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _pad(body: str, flags: str, width: int, visible: int | None = None) -> str:
    size = len(body) if visible is None else visible
    if width <= size:
        return body
    fill = " " * (width - size)
    return body + fill if "-" in flags else fill + body


def _c_int(value: int, conv: str, flags: str, width: int, prec: int | None) -> str:
    """printf of an integer already converted to the conversion's C type."""
    mag = -value if value < 0 else value
    if conv in "diu":
        digits = str(mag)
    elif conv == "x":
        digits = format(mag, "x")
    elif conv == "X":
        digits = format(mag, "X")
    else:  # 'o'
        digits = format(mag, "o")
    if prec is not None:
        digits = "" if prec == 0 and mag == 0 else digits.zfill(prec)
    prefix = ""
    if conv in "di":
        prefix = "-" if value < 0 else "+" if "+" in flags else " " if " " in flags else ""
    elif "#" in flags:
        if conv in "xX" and mag:
            prefix = "0" + conv
        elif conv == "o" and not digits.startswith("0"):
            digits = "0" + digits
    if "0" in flags and "-" not in flags and prec is None and width > len(prefix) + len(digits):
        digits = digits.zfill(width - len(prefix))
    return _pad(prefix + digits, flags, width)


def c_printf_int(spec: str, value: int, star: int | None = None) -> str:
    """printf of one integer conversion ``spec`` (``"%#08lx"``); ``value`` is already
    of the conversion's C type, ``star`` the value of a ``*`` width or precision."""
    cspec = _CSpec(spec)
    flags, width, prec = cspec.resolve(star)
    return _c_int(value, cspec.conv, flags, width, prec)


def _c_str(text: str, flags: str, width: int, prec: int | None) -> str:
    """printf("%s") of text; width and precision count bytes, as in C."""
    if text.isascii():
        if prec is not None and len(text) > prec:
            text = text[:prec]
        return _pad(text, flags, width) if width else text
    raw = text.encode("utf-8", "surrogateescape")
    if prec is not None and len(raw) > prec:
        raw = raw[:prec]
        text = raw.decode("utf-8", "surrogateescape")
    return _pad(text, flags, width, len(raw)) if width else text


def _glibc_pointer(v: int) -> str:
    return "0x%x" % v if v else "(nil)"


def _ip4_text(b: bytes, style: str, reverse: bool) -> str:
    if reverse:
        b = b[::-1]
    fmt = "%03d.%03d.%03d.%03d" if style == "i" else "%d.%d.%d.%d"
    return fmt % (b[0], b[1], b[2], b[3])


def _ip6c_text(a: bytes) -> str:
    """Compressed IPv6 text (libtraceevent's print_ip6c_addr, like the kernel's %pI6c)."""
    words = [int.from_bytes(a[j : j + 2], "big") for j in range(0, 16, 2)]
    v4mapped = a[0:10] == b"\0" * 10 and a[10:12] == b"\xff\xff"
    isatap = bytes([a[8] | 0x02, a[9], a[10], a[11]]) == b"\x02\x00\x5e\xfe"
    use_ipv4 = v4mapped or isatap
    rng = 6 if use_ipv4 else 8
    zerolength = [0] * 8
    for i in range(rng):
        for j in range(i, rng):
            if words[j] != 0:
                break
            zerolength[i] += 1
    longest, colonpos = 1, -1
    for i in range(rng):
        if zerolength[i] > longest:
            longest, colonpos = zerolength[i], i
    if longest == 1:
        colonpos = -1
    out: list[str] = []
    needcolon = False
    i = 0
    while i < rng:
        if i == colonpos:
            if needcolon or i == 0:
                out.append(":")
            out.append(":")
            needcolon = False
            i += longest
            continue
        if needcolon:
            out.append(":")
        hi, lo = words[i] >> 8, words[i] & 0xFF
        out.append("%x%02x" % (hi, lo) if hi else "%x" % lo)
        needcolon = True
        i += 1
    if use_ipv4:
        if needcolon:
            out.append(":")
        out.append("%d.%d.%d.%d" % (a[12], a[13], a[14], a[15]))
    return "".join(out)


def _bitmask_text(data: bytes, little: bool) -> str:
    """print_bitmask_to_seq: hex digits, most significant first, a comma every 32 bits."""
    size = len(data)
    nr_bits = size * 8
    str_size = (nr_bits + 3) // 4 + (int((nr_bits - 1) / 32) if nr_bits else 0)
    out = [""] * str_size
    length = 0
    i = str_size - 2
    while i >= 0:
        index = size - (length + 1) if not little else length
        h = "%02x" % data[index]
        out[i], out[i + 1] = h[0], h[1]
        length += 1
        if not (length & 3) and i > 0:
            i -= 1
            out[i] = ","
        i -= 2
    return "".join(out)


def _cpumask_text(data: bytes, little: bool) -> str:
    """print_cpumask_to_seq: CPU ranges such as "0-3,8"."""
    bits = []
    size = len(data)
    for i in range(size):
        byte = data[size - (i + 1)] if not little else data[i]
        for b in range(8):
            bits.append((byte >> b) & 1)
    out: list[str] = []
    cpu, total = 0, len(bits)
    while cpu < total:
        if bits[cpu]:
            first = cpu
            while cpu < total and bits[cpu]:
                cpu += 1
            out.append(str(first) if cpu - 1 == first else "%d-%d" % (first, cpu - 1))
        else:
            cpu += 1
    return ",".join(out)
