"""Writers of traces for other tools: ``tracewatch report``'s output (tracedat_report); the lines
themselves are rendered in formats (``formats.report_text``)."""

from ..formats.report_text import ReportFormatter, report_lines, timestamps_in_usecs, write_report

__all__ = ["ReportFormatter", "report_lines", "timestamps_in_usecs", "write_report"]
