"""tracewatch's version, in a module of its own so that any layer can name it (dump sidecars,
``tracewatch --version``) without importing the package's public surface."""

__version__ = "0.1.0"
