"""tracewatch: watch Linux kernel trace streams and hand every event to Python code."""

__version__ = "0.1.0"
