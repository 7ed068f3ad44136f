"""Entry/exit pairing: turn enter and exit events into durations.

    p = Pairing()
    p.enter(ev.common_pid, ev.common_ts, data=ev.id)     # on sys_enter / a p: uprobe
    r = p.exit(ev.common_pid, ev.common_ts)              # on sys_exit / the r: uprobe
    if r is not None:
        duration_ns, syscall_id = r

Entries are kept per key (a thread id, or a tuple such as ``(tid, func)``) on a
stack, so recursive calls nest.  What goes wrong in real traces is counted, not
hidden:

* ``orphans``: exits with no open entry (their enter was lost or came before
  tracing started);
* ``dropped``: open entries thrown away by :meth:`Pairing.lost` (call it when
  the ring buffer reports lost events: their exits may be gone),
  :meth:`Pairing.expire`, :meth:`Pairing.forget`, or because a stack grew past
  ``max_depth``;
* ``evicted``: entries of the oldest thread, dropped when more than
  ``max_open`` threads have open entries, so a weeks-long run stays bounded;
* :meth:`Pairing.open_entries` lists what is still open at the end, with ages.

Batch handlers pair whole numpy columns in one compiled pass:
:func:`pair_arrays` (stateless) and :meth:`Pairing.feed_arrays` (carries open
entries from one batch to the next).  :class:`SyscallPairing` pairs
``raw_syscalls:sys_enter``/``sys_exit`` by thread for per-syscall latency.
"""

from __future__ import annotations

from typing import Any, Hashable, NamedTuple

import numpy as np

from ..compiled import kernel

__all__ = ["Pairing", "OpenEntry", "PairedArrays", "pair_arrays", "SyscallPairing"]


class OpenEntry(NamedTuple):
    """An entry still waiting for its exit."""

    key: Hashable
    ts: int  # enter timestamp, ns
    depth: int  # 1: outermost call of this key
    data: Any
    cpu: int | None
    age: int | None  # now - ts, when open_entries() was given ``now``


class PairedArrays(NamedTuple):
    """Completed pairs of a batch, in the order of their exits, with the rows
    that did not pair."""

    key: np.ndarray  # key of each pair
    start_ts: np.ndarray  # its enter timestamp (int64 ns)
    duration: np.ndarray  # exit ts - enter ts (int64 ns)
    enter_index: np.ndarray  # row of the enter; -1 when it came in an earlier batch
    exit_index: np.ndarray  # row of the exit
    orphan_index: np.ndarray  # exit rows that had no open entry
    unfinished_index: np.ndarray  # enter rows still open after the batch
    enter_data: np.ndarray | None  # data of each pair's enter, when data was given


@kernel
def _pair_kernel(codes, ts, is_enter, n_keys):  # type: ignore[no-untyped-def]
    # One pass in time order; the open entries of each key form a stack linked
    # through prev[] (top[] is the newest open enter of the key, -1 if none).
    n = codes.shape[0]
    top = np.full(n_keys, -1, np.int64)
    prev = np.empty(n, np.int64)
    enter_idx = np.empty(n, np.int64)
    exit_idx = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        u = codes[i]
        if is_enter[i]:
            prev[i] = top[u]
            top[u] = i
        else:
            j = top[u]
            if j >= 0:
                enter_idx[m] = j
                exit_idx[m] = i
                m += 1
                top[u] = prev[j]
    return enter_idx[:m], exit_idx[:m]


def _pair(key: np.ndarray, ts: np.ndarray, is_enter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(key) == 0:
        e = np.empty(0, np.int64)
        return e, e
    uniq, codes = np.unique(key, return_inverse=True)
    return _pair_kernel(codes.astype(np.int64).ravel(), ts, is_enter, len(uniq))  # type: ignore[no-any-return]


def _columns(key: Any, ts: Any, is_enter: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    key = np.asarray(key)
    ts = np.asarray(ts).astype(np.int64, copy=False)
    is_enter = np.asarray(is_enter).astype(np.bool_, copy=False)
    if key.ndim != 1 or ts.shape != key.shape or is_enter.shape != key.shape:
        raise ValueError("key, ts and is_enter must be one-dimensional arrays of the same length")
    return key, ts, is_enter


def pair_arrays(key: Any, ts: Any, is_enter: Any, data: Any = None) -> PairedArrays:
    """Pair enter and exit rows given as numpy arrays in time order.

    The result is what feeding the rows one by one to a fresh :class:`Pairing`
    (with no bounds) gives: each exit closes the newest open enter of its key.

        r = pair_arrays(tid, ts, is_enter)
        lat.update_from_arrays(r.key, r.duration)
    """
    key, ts, is_enter = _columns(key, ts, is_enter)
    enter_idx, exit_idx = _pair(key, ts, is_enter)
    open_mask = is_enter.copy()
    open_mask[enter_idx] = False
    orphan_mask = ~is_enter
    orphan_mask[exit_idx] = False
    start = ts[enter_idx]
    return PairedArrays(
        key[exit_idx],
        start,
        ts[exit_idx] - start,
        enter_idx,
        exit_idx,
        np.flatnonzero(orphan_mask),
        np.flatnonzero(open_mask),
        None if data is None else np.asarray(data)[enter_idx],
    )


class Pairing:
    """Pairs enter and exit events by key (a thread id, or ``(tid, something)``).

        p = Pairing(max_open=100_000)
        p.enter(tid, ts, data=fd)
        r = p.exit(tid, ts)          # (duration_ns, data) or None (an orphan)

    Each key holds a stack, so nested and recursive calls pair innermost first.
    ``max_open`` bounds the number of keys with open entries (the oldest is
    evicted), ``max_depth`` the stack of one key (its oldest entry is dropped).
    """

    def __init__(self, max_open: int = 1 << 20, max_depth: int = 256) -> None:
        if max_open < 1 or max_depth < 1:
            raise ValueError("max_open and max_depth must be at least 1")
        self.max_open = max_open
        self.max_depth = max_depth
        self._open: dict[Hashable, list[tuple[int, Any, int | None]]] = {}
        self._n = 0
        self.completed = 0
        self.orphans = 0
        self.dropped = 0
        self.evicted = 0

    # -- per event
    def enter(self, key: Hashable, ts: int, data: Any = None, cpu: int | None = None) -> None:
        """Open an entry for ``key`` at ``ts`` (ns); ``data`` comes back at exit.
        ``cpu`` (where it entered) lets :meth:`lost` drop only that CPU's entries."""
        st = self._open.get(key)
        if st is None:
            if len(self._open) >= self.max_open:
                self._evict_oldest()
            self._open[key] = [(ts, data, cpu)]
        else:
            if len(st) >= self.max_depth:
                del st[0]
                self.dropped += 1
                self._n -= 1
            st.append((ts, data, cpu))
        self._n += 1

    def exit(self, key: Hashable, ts: int) -> tuple[int, Any] | None:
        """Close the newest open entry of ``key``: ``(ts - enter_ts, enter data)``,
        or None when there is none (counted in ``orphans``)."""
        st = self._open.get(key)
        if st is None:
            self.orphans += 1
            return None
        t0, data, _ = st.pop()
        if not st:
            del self._open[key]
        self._n -= 1
        self.completed += 1
        return ts - t0, data

    def depth(self, key: Hashable) -> int:
        """How many entries of ``key`` are open."""
        st = self._open.get(key)
        return len(st) if st else 0

    def __len__(self) -> int:
        """The number of open entries (all keys, all depths)."""
        return self._n

    def __contains__(self, key: Hashable) -> bool:
        return key in self._open

    # -- trouble
    def _evict_oldest(self) -> None:
        oldest = next(iter(self._open))
        n = len(self._open.pop(oldest))
        self.evicted += n
        self._n -= n

    def _drop_where(self, doomed: Any) -> int:
        n = 0
        for key in list(self._open):
            st = self._open[key]
            keep = [f for f in st if not doomed(f)]
            if len(keep) != len(st):
                n += len(st) - len(keep)
                if keep:
                    self._open[key] = keep
                else:
                    del self._open[key]
        self.dropped += n
        self._n -= n
        return n

    def lost(self, cpu: int | None = None) -> int:
        """Events were lost (on ``cpu``, or anywhere): drop the open entries whose
        exits may be among them and return how many.  With a ``cpu``, entries
        that entered on it are dropped, and so are entries of unknown CPU."""
        if cpu is None:
            n = self._n
            self._open.clear()
            self._n = 0
            self.dropped += n
            return n
        return self._drop_where(lambda f: f[2] is None or f[2] == cpu)

    reset = lost

    def expire(self, before_ts: int) -> int:
        """Drop entries that entered before ``before_ts`` (their exit is taken as
        lost); returns how many."""
        return self._drop_where(lambda f: f[0] < before_ts)

    def forget(self, key: Hashable) -> int:
        """Drop every open entry of ``key`` (e.g. on ``sched:sched_process_exit``)."""
        st = self._open.pop(key, None)
        n = len(st) if st else 0
        self.dropped += n
        self._n -= n
        return n

    def open_entries(self, now: int | None = None) -> list[OpenEntry]:
        """Entries still open, oldest first, with ``age = now - ts`` when ``now`` is given."""
        out = [
            OpenEntry(key, ts, d, data, cpu, None if now is None else now - ts)
            for key, st in self._open.items()
            for d, (ts, data, cpu) in enumerate(st, 1)
        ]
        out.sort(key=lambda e: e.ts)
        return out

    unfinished = open_entries

    def counters(self) -> dict[str, int]:
        """completed, orphans, dropped, evicted and open, for a summary line."""
        return {
            "completed": self.completed,
            "orphans": self.orphans,
            "dropped": self.dropped,
            "evicted": self.evicted,
            "open": self._n,
        }

    # -- batches
    def feed_arrays(self, key: Any, ts: Any, is_enter: Any, data: Any = None) -> PairedArrays:
        """Pair a batch of rows (numpy arrays in time order) in one compiled pass,
        continuing the entries left open by earlier calls and :meth:`enter`.

        Open entries after the batch stay open for the next one (their ``data``
        is the row's ``data`` element, their cpu unknown).  ``max_open`` and
        ``max_depth`` are applied after the batch, not within it.  Keys must be
        scalars (ints or strings), not tuples; combine columns into one first.
        """
        key, ts, is_enter = _columns(key, ts, is_enter)
        dat = None if data is None else np.asarray(data)
        frames: list[tuple[int, Any, int | None]] = []
        fkeys: list[Any] = []
        for k, st in self._open.items():
            for f in st:
                fkeys.append(k)
                frames.append(f)
        nc = len(frames)
        if nc:
            all_key = np.concatenate([np.array(fkeys, dtype=key.dtype if key.size else None), key])
            all_ts = np.concatenate([np.array([f[0] for f in frames], np.int64), ts])
            all_enter = np.concatenate([np.ones(nc, np.bool_), is_enter])
        else:
            all_key, all_ts, all_enter = key, ts, is_enter
        enter_idx, exit_idx = _pair(all_key, all_ts, all_enter)

        open_mask = all_enter.copy()
        open_mask[enter_idx] = False
        orphan_mask = ~all_enter
        orphan_mask[exit_idx] = False
        start = all_ts[enter_idx]
        exit_rows = exit_idx - nc
        enter_rows = enter_idx - nc
        enter_data = None
        if dat is not None:
            missing = -1 if dat.dtype.kind in "if" else 0
            carried = np.array([missing if f[1] is None else f[1] for f in frames], dtype=dat.dtype)
            enter_data = np.concatenate([carried, dat])[enter_idx]
        result = PairedArrays(
            key[exit_rows],
            start,
            ts[exit_rows] - start,
            np.where(enter_rows < 0, -1, enter_rows),
            exit_rows,
            np.flatnonzero(orphan_mask) - nc,
            np.flatnonzero(open_mask[nc:]),
            enter_data,
        )
        self.completed += len(exit_idx)
        self.orphans += len(result.orphan_index)

        # the entries still open: carried ones keep their frame, new ones get one
        still = np.flatnonzero(open_mask)
        new_open: dict[Hashable, list[tuple[int, Any, int | None]]] = {}
        if len(still):
            keys_py = all_key[still].tolist()
            ts_py = all_ts[still].tolist()
            data_py = dat[still[still >= nc] - nc].tolist() if dat is not None else None
            j = 0
            for i, k, t in zip(still.tolist(), keys_py, ts_py):
                if i < nc:
                    f = frames[i]
                else:
                    f = (t, None if data_py is None else data_py[j], None)
                    j += 1
                st = new_open.get(k)
                if st is None:
                    new_open[k] = [f]
                else:
                    st.append(f)
        self._open = new_open
        self._n = len(still)
        for st in new_open.values():
            if len(st) > self.max_depth:
                extra = len(st) - self.max_depth
                del st[:extra]
                self.dropped += extra
                self._n -= extra
        while len(self._open) > self.max_open:
            self._evict_oldest()
        return result


class SyscallPairing(Pairing):
    """Per-syscall latency from ``raw_syscalls:sys_enter``/``sys_exit``, paired by
    thread (``common_pid`` is the thread id in ftrace).

        sc = SyscallPairing()
        lat = Map(hist)

        @on("raw_syscalls:sys_enter")
        def enter(ev):
            sc.sys_enter(ev)

        @on("raw_syscalls:sys_exit")
        def leave(ev):
            r = sc.sys_exit(ev)          # (duration_ns, syscall id) or None
            if r:
                lat[r[1]].add(r[0])

    A thread is in at most one syscall, so a second sys_enter without an exit
    drops the first (its exit was lost; counted in ``dropped``).  Threads that
    call exit() never return: :meth:`forget` them on ``sched_process_exit``.
    """

    def __init__(self, max_open: int = 1 << 16) -> None:
        super().__init__(max_open=max_open, max_depth=1)

    def sys_enter(self, ev: Any) -> None:
        """Feed a ``raw_syscalls:sys_enter`` event (fields common_pid, common_ts, id)."""
        self.enter(ev.common_pid, ev.common_ts, ev.id, getattr(ev, "common_cpu", None))

    def sys_exit(self, ev: Any) -> tuple[int, int] | None:
        """Feed a ``raw_syscalls:sys_exit`` event: ``(duration_ns, syscall id)`` or None."""
        return self.exit(ev.common_pid, ev.common_ts)

    def feed_batches(
        self, enter_pid: Any, enter_ts: Any, enter_id: Any, exit_pid: Any, exit_ts: Any
    ) -> PairedArrays:
        """Pair a sys_enter batch with the sys_exit batch of the same time span.

        The rows are merged by timestamp (an exit sorts before an enter of the
        same ns); in the result ``enter_index`` indexes the enter arrays,
        ``exit_index``/``orphan_index`` the exit arrays, ``unfinished_index``
        the enter arrays and ``enter_data`` is the syscall id.
        """
        ep = np.asarray(enter_pid)
        xp = np.asarray(exit_pid)
        ne = len(ep)
        key = np.concatenate([ep, xp])
        ts = np.concatenate([np.asarray(enter_ts, np.int64), np.asarray(exit_ts, np.int64)])
        is_enter = np.concatenate([np.ones(ne, np.bool_), np.zeros(len(xp), np.bool_)])
        ids = np.concatenate([np.asarray(enter_id, np.int64), np.full(len(xp), -1, np.int64)])
        order = np.lexsort((is_enter, ts))
        r = self.feed_arrays(key[order], ts[order], is_enter[order], ids[order])
        enter_index = np.where(r.enter_index < 0, -1, order[np.maximum(r.enter_index, 0)])
        return r._replace(
            enter_index=enter_index,
            exit_index=order[r.exit_index] - ne,
            orphan_index=order[r.orphan_index] - ne,
            unfinished_index=np.sort(order[r.unfinished_index]),
        )
