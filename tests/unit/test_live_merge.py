"""LiveMerger: pages arriving per CPU in batches come out in the file reader's order."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import fixture_path
from tracewatch.formats.tracedat import TraceDatReader
from tracewatch.stream.batch import TraceContext
from tracewatch.stream.merge import LiveMerger


def _pages(cpu: int) -> np.ndarray:
    return np.frombuffer(fixture_path(f"raw-pages/cpu{cpu}.raw").read_bytes(), dtype=np.uint8)


@pytest.mark.parametrize("batch_pages", [1, 3, 16])
def test_batches_merge_into_file_order(batch_pages):
    ref = TraceDatReader(str(fixture_path("raw-pages/pages.v7.dat")))
    want = ref.index()
    ctx = TraceContext(ref.formats, ref.symbols)
    m = LiveMerger(ctx, [0, 1], 4096)
    pages = {c: _pages(c) for c in (0, 1)}
    got_ts, got_cpu, got_type = [], [], []
    n_pages = len(pages[0]) // 4096
    for start in range(0, n_pages, batch_pages):
        for cpu in (0, 1):
            m.add_pages(cpu, pages[cpu][start * 4096 : (start + batch_pages) * 4096])
        chunk = m.release()
        if chunk is not None:
            got_ts.append(chunk.ts), got_cpu.append(chunk.cpu), got_type.append(chunk.type_id)
            # every event's bytes are reachable through the chunk's buffers
            for i in range(min(5, len(chunk))):
                buf = chunk.buffers[int(chunk.cpu[i])]
                tid = int.from_bytes(buf[chunk.offset[i] : chunk.offset[i] + 2].tobytes(), "little")
                assert tid == chunk.type_id[i]
    last = m.release(final=True)
    if last is not None:
        got_ts.append(last.ts), got_cpu.append(last.cpu), got_type.append(last.type_id)
    ts = np.concatenate(got_ts)
    assert len(ts) == len(want) == 2609
    assert np.array_equal(ts, want.ts.astype(np.int64))
    assert np.array_equal(np.concatenate(got_cpu), want.cpu)
    assert np.array_equal(np.concatenate(got_type), want.type_id)
    assert m.out_of_order == 0 and m.pending_events == 0


def test_idle_cpu_stops_holding_back():
    ref = TraceDatReader(str(fixture_path("raw-pages/pages.v7.dat")))
    m = LiveMerger(TraceContext(ref.formats, ref.symbols), [0, 1], 4096, idle_after=2)
    m.add_pages(0, _pages(0)[: 4 * 4096])
    assert m.release() is None  # CPU 1 has not spoken: it could still hold earlier events
    chunk = m.release()  # CPU 1 was idle for two rounds: CPU 0's events go
    assert chunk is not None and len(chunk) > 0 and set(chunk.cpu.tolist()) == {0}
