"""Durations and sizes as users write them."""

import pytest

from tracewatch.units import parse_duration, parse_size


@pytest.mark.parametrize("text,ns", [("500ms", 500_000_000), ("2s", 2_000_000_000), ("1m", 60_000_000_000),
                                     ("1.5", 1_500_000_000), (3, 3_000_000_000), ("250us", 250_000),
                                     ("1h", 3_600_000_000_000), ("10ns", 10)])
def test_durations(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text,size", [("64M", 64 << 20), ("512k", 512 << 10), ("1G", 1 << 30),
                                       ("1.5M", 3 << 19), (4096, 4096), ("2MiB", 2 << 20), ("100", 100)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "fast", "5 parsecs", "-1s"])
def test_bad_durations_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", ["", "lots", "5T", "-3M"])
def test_bad_sizes_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(bad)
