"""Render an event's ``print fmt`` exactly as libtraceevent (``trace-cmd report``) does.

A format file ends with a line such as::

    print fmt: "comm=%s pid=%d", REC->comm, REC->pid

that is, a C format string followed by C argument expressions.  The kernel
renders it with ``vsnprintf``; ``trace-cmd report`` renders it with
libtraceevent, which has its own expression parser and its own idea of every
conversion.  tracewatch must print what ``trace-cmd report`` prints, so this
module follows libtraceevent's rules, including the places where they differ
from C:

* binary operators of equal priority group to the *right* (``a - b - c`` is
  ``a - (b - c)``), and a parenthesised operand keeps the priority of its
  operator when the tree is rotated;
* numbers are 64-bit unsigned; casts to ``char``/``short``/``int`` (and the
  ``u8``.. ``s32`` names) only mask, they never sign-extend; ``^`` evaluates
  to 0;
* unknown identifiers evaluate to the address of the kernel symbol of that
  name, or 0; ``__print_symbolic``/``__print_flags`` entries whose value is an
  unknown identifier never match;
* ``%p`` prints ``0x..`` or ``(nil)``, ``%ps``/``%pS`` print ``sym`` or
  ``sym+0xoff`` (``0x..`` when no symbol holds the address), unknown ``%p``
  extensions print the pointer followed by the extension letters;
* ``%c`` is no conversion (libtraceevent 1.7): it prints ``>c<`` and takes no
  argument, and so do the ``+`` and space flags (``>+<``, ``> <``); ``L`` is ``ll``, as trace-cmd
  prints it (the whole 64-bit value);
* a format libtraceevent cannot parse prints ``[FAILED TO PARSE]`` followed by
  ``name=value`` for every field (and ``report -R`` prints every field raw).

The work is split in three steps, done once per event type, one module each:

1. ``_tokenize`` + ``_parse``: the argument expressions become a tree of
   ``_Arg`` nodes, built with libtraceevent's algorithm (see above);
2. ``_segments``: the format string becomes a list of :class:`Segment` (literal
   text, or one conversion bound to one argument): libtraceevent's
   ``print_cache``, which both the formatted report and ``report -R``
   (``formats/report_text``) use;
3. ``_compile``: each segment becomes a closure over precompiled
   ``struct.Struct`` readers, and the whole line a Python ``%`` template
   (``_cprintf`` does the C printf conversions Python's ``%`` does not share).

``PrintFormat.render`` then runs the closures on one record.  Symbols (kallsyms,
printk formats), the long size and the byte order come from ``TraceSymbols``.

Text is ``str``; bytes from the trace that are not UTF-8 decode with
``surrogateescape`` so that writing with ``errors="surrogateescape"`` gives
back the exact bytes.  A trailing newline in the rendered text is kept:
``trace-cmd report`` removes one trailing ``\\n`` from the whole line (that is
the report writer's job).
"""

from ._cprintf import c_printf_int
from ._print_format import PrintFormat, PrintFormatBatch, PrintFormatError
from ._segments import SEG_NUMBER, SEG_POINTER, SEG_STRING, SEG_TEXT, Segment

__all__ = ["PrintFormat", "PrintFormatBatch", "PrintFormatError", "Segment", "SEG_TEXT", "SEG_NUMBER", "SEG_POINTER",
           "SEG_STRING", "c_printf_int"]
