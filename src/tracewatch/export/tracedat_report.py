"""What ``tracewatch report`` writes for a trace.dat reader's merged index: report lines, JSON lines, the lost table.

The index may come in parts (``TraceDatReader.merged_parts``): a big file is
printed a window at a time in bounded memory.  ``report_chunks`` renders with
:class:`~tracewatch.formats.report_text.ReportFormatter`, so its lines are
``trace-cmd report``'s (``raw``: ``-R``'s).
"""

from __future__ import annotations

import json
from typing import IO, Iterable, Iterator

import numpy as np

from ..formats.event_format import field_value
from ..formats.tracedat import MergedIndex, TraceDatReader
from ..formats.report_text import ReportFormatter

__all__ = ["report_chunks", "json_lines", "lost_summary", "write_lines", "write_chunks"]


def report_chunks(reader: TraceDatReader, index: MergedIndex | Iterable[MergedIndex], *, raw: bool
                  ) -> Iterator[list[str]]:
    """The report lines of the events in ``index`` (no newlines), a list per run of events;
    ``index`` may also be the successive parts of one merged order (``merged_parts``)."""
    formatter = ReportFormatter(reader.symbols, reader.formats, raw=raw,
                                in_usecs=reader.timestamps_in_usecs)
    formats = reader.formats
    buffers = [reader.cpu_buffer(c)[0] for c in range(reader.cpus)]
    # C's %s on a char buf[] without NUL reads on into the page: those records get the page's rest
    trailing = {i for i, f in formats.items() if any(fl.array_len == 0 for fl in f.fields)}
    for part in [index] if isinstance(index, MergedIndex) else index:
        # one formatter for every part: what it learns as the report goes carries over
        yield from formatter.index_lines(buffers, part, page_size=reader.page_size, tail_types=trailing)


def json_lines(reader: TraceDatReader, index: MergedIndex | Iterable[MergedIndex]) -> Iterator[str]:
    """One JSON object per event: name, system, metadata (common_*), then the fields."""
    for part in [index] if isinstance(index, MergedIndex) else index:
        yield from _json_lines(reader, part)


def _json_lines(reader: TraceDatReader, index: MergedIndex) -> Iterator[str]:
    formats = reader.formats
    buffers = [reader.cpu_buffer(c)[0] for c in range(reader.cpus)]
    little = reader.little_endian
    cmdlines = reader.symbols.cmdlines.by_pid
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for cpu, ts, off, ln, ty in zip(index.cpu.tolist(), index.ts.tolist(), index.offset.tolist(),
                                    index.length.tolist(), index.type_id.tolist()):
        fmt = formats.get(ty)
        payload = buffers[cpu][off : off + ln].tobytes()
        obj: dict[str, object] = {}
        if fmt is None:
            obj.update(event=f"unknown:{ty}", common_type=ty)
        else:
            obj["event"] = f"{fmt.system}:{fmt.name}"
        obj["common_ts"] = ts
        obj["common_cpu"] = cpu
        if fmt is not None:
            for f in fmt.fields:
                obj[f.name] = field_value(f, payload, little)
            pid = obj.get("common_pid", 0)
            obj["common_comm"] = "<idle>" if pid == 0 else cmdlines.get(pid, "<...>")  # type: ignore[arg-type]
        yield dumps(obj)


def write_lines(lines: Iterator[str], out: IO[bytes], chunk: int = 4096) -> None:
    """Write lines to a binary stream in chunks; surrogate escapes become their original bytes."""
    buf: list[str] = []
    for text in lines:
        buf.append(text)
        if len(buf) >= chunk:
            buf.append("")
            out.write("\n".join(buf).encode("utf-8", "surrogateescape"))
            buf.clear()
    if buf:
        buf.append("")
        out.write("\n".join(buf).encode("utf-8", "surrogateescape"))


def write_chunks(chunks: Iterator[list[str]], out: IO[bytes]) -> None:
    """Write lists of lines to a binary stream, a list at a time (surrogate escapes: their bytes)."""
    for lines in chunks:
        if lines:
            lines.append("")
            out.write("\n".join(lines).encode("utf-8", "surrogateescape"))


def lost_summary(reader: TraceDatReader, index: MergedIndex | np.ndarray) -> str:
    """The per-CPU table of events shown and lost; ``index`` may be the shown events' counts per CPU."""
    rows = ["CPU  events      lost  pages-with-loss"]
    lost = reader.lost_events()
    if isinstance(index, np.ndarray):
        counts = index
    else:
        counts = np.bincount(index.cpu, minlength=reader.cpus) if len(index) else np.zeros(reader.cpus, int)
    for cpu in range(reader.cpus):
        le = lost.get(cpu)
        n_lost = "?" if le is None else (f"{le.lost}+?" if le.unknown_pages else str(le.lost))
        pages = 0 if le is None else le.pages_with_loss
        rows.append(f"{cpu:>3}  {int(counts[cpu]):>6}  {n_lost:>8}  {pages:>15}")
    return "\n".join(rows)
