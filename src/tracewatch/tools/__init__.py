"""Ready-made commands, one module each, each with ``main(argv) -> int``."""
