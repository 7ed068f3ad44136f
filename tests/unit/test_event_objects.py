"""Event objects: every value an Event gives (tuple slot or lazy) is the record's own value."""

from __future__ import annotations

import pytest

from tests.conftest import fixture_path
from tracewatch import open_trace
from tracewatch.stream.batch import event_layout


@pytest.mark.parametrize("name", ["e_mixed.v6.dat", "b_sched.v6.dat"])
def test_every_event_value_is_the_records_value(name):
    path = str(fixture_path(name))
    seen_types = set()
    with open_trace(path) as t:
        for ev in t.events():
            fmt = ev.format_
            want = fmt.unpack(ev.payload_())
            for field in fmt.fields:
                assert getattr(ev, field.name) == want[field.name], (fmt.full_name, field.name)
            layout = event_layout(fmt)
            # the tuple holds exactly the eager values, then the batch and the row
            assert len(ev) == len(layout) + 2
            for fname, i in layout.items():
                assert ev[i] == getattr(ev, fname)
            assert ev.as_dict_()["common_ts"] == ev.common_ts and ev.common_comm == ev.as_dict_()["common_comm"]
            seen_types.add(fmt.full_name)
    assert len(seen_types) >= 3
