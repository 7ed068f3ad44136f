"""The scripting API: handlers, aggregations (Map, hist), entry/exit pairing.

The public names are wired in ``tracewatch/__init__.py``; the modules here are
``aggregations`` (Map and its leaves), ``histogram`` (hist, lhist) and
``pairing`` (enter/exit pairing).
"""
