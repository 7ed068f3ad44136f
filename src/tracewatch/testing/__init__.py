"""Helpers for testing code that consumes tracewatch data (like ``trio.testing``).

``PageBuilder`` writes ftrace ring-buffer pages with every header kind, so
decoders can be tested without a kernel; ``MemorySource`` is an event source
(the :class:`~tracewatch.sources.EventSource` contract) over such pages, so
handlers, scripts and tools can be tested without a fixture file or a kernel;
``event_format`` and ``record`` make the formats and records its events need.
"""

from .memory_source import MemorySource, event_format, record
from .page_builder import ExpectedEvent, PageBuilder, make_payload

__all__ = ["PageBuilder", "ExpectedEvent", "make_payload", "MemorySource", "event_format", "record"]
