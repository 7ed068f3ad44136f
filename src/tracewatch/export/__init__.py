"""Writers of trace text: ``trace-cmd report`` compatible lines (report_text)."""

from .report_text import ReportFormatter, report_lines, timestamps_in_usecs, write_report

__all__ = ["ReportFormatter", "report_lines", "timestamps_in_usecs", "write_report"]
