"""Helpers for testing code that consumes tracewatch data (like ``trio.testing``).

``PageBuilder`` writes ftrace ring-buffer pages with every header kind, so
decoders can be tested without a kernel.
"""

from .page_builder import ExpectedEvent, PageBuilder, make_payload

__all__ = ["PageBuilder", "ExpectedEvent", "make_payload"]
