"""Keep synchronising when an optional sensor goes silent: sets go on without it.

An approximate-time synchroniser waits for every input, so one failed camera
(an unplugged thermal, a crashed depth driver) stops every output. The models
are trained to run with a modality missing (validity 0, modality dropout), so
the right behaviour is to carry on without the silent input and say so.

`TolerantSynchronizer` wraps `ApproximateTimeSynchronizer`. Time is the
*message stamps* of the clock input (the left image), never the wall clock, so a
live node, a bag replayed faster than real time and sim time all behave alike.
An optional input is *down* when its newest stamp is more than `timeout_s`
behind the clock input's (or it has sent nothing for `timeout_s` of clock-input
time). While an input is down, each clock-input item is accompanied by a
placeholder for it, stamped to coincide, so the set completes and carries None
in that input's place. The first real message from a down input brings it back.
A clock input that jumps back by more than `timeout_s` (a looping bag) starts
the bookkeeping afresh: every input is up again.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

from road_seg_core.sync import NS_PER_S, ApproximateTimeSynchronizer, SyncStats

_LOG = logging.getLogger(__name__)


class _Missing:
    """Placeholder queued for a down input; turned into None in the sets returned."""

    __slots__ = ()


MISSING = _Missing()


class TolerantSynchronizer:
    """`ApproximateTimeSynchronizer` that goes on without optional inputs that have gone silent.

    Args:
        sync: the synchroniser over all inputs (its offsets are honoured).
        names: one name per input, for logs and `down_names`.
        required: per input, whether sets must wait for it; input 0 (the clock input) must be required.
        timeout_s: how long an optional input may be silent before sets go on without it (> 0).
    """

    def __init__(self, sync: ApproximateTimeSynchronizer, names: Sequence[str], required: Sequence[bool],
                 timeout_s: float) -> None:
        n = sync.num_inputs
        if len(names) != n or len(required) != n:
            raise ValueError(f"names and required need one entry per input ({n})")
        if not required[0]:
            raise ValueError("input 0 is the clock input and must be required")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.sync = sync
        self.names = tuple(names)
        self.required = tuple(bool(r) for r in required)
        self.timeout_ns = round(timeout_s * NS_PER_S)
        self._offsets_ns = [round(o * NS_PER_S) for o in sync.offsets_s]
        self._newest: list[int | None] = [None] * n
        self._start: int | None = None
        self._down: set[int] = set()
        #: Per input: sets completed without it (its placeholder stood in).
        self.substituted = [0] * n
        self._lock = threading.Lock()

    @property
    def stats(self) -> SyncStats:
        """The wrapped synchroniser's counters (`received` includes placeholders: see `substituted`)."""
        return self.sync.stats

    @property
    def down_names(self) -> tuple[str, ...]:
        """Inputs currently treated as down, in input order."""
        return tuple(self.names[i] for i in sorted(self._down))

    def add(self, index: int, stamp_ns: int | None, item: Any) -> list[tuple[Any, ...]]:
        """Queue `item` of input `index`; the sets completed, with None for inputs that are down."""
        with self._lock:
            return self._add(index, stamp_ns, item)

    def _add(self, index: int, stamp_ns: int | None, item: Any) -> list[tuple[Any, ...]]:
        sets: list[tuple[Any, ...]] = []
        if stamp_ns is not None:
            stamp = int(stamp_ns) + self._offsets_ns[index]
            if index == 0:
                self._on_clock(stamp)
                for i in sorted(self._down):  # stand-ins first, so the clock item completes its set at once
                    sets += self.sync.add(i, stamp - self._offsets_ns[i], MISSING)
            else:
                newest = self._newest[index]
                self._newest[index] = stamp if newest is None else max(newest, stamp)
                if index in self._down:
                    self._down.discard(index)
                    _LOG.warning("%s is back: sets include it again", self.names[index])
        sets += self.sync.add(index, stamp_ns, item)
        return [self._unwrap(s) for s in sets]

    def _on_clock(self, stamp: int) -> None:
        if self._start is None or self._newest[0] is not None and self._newest[0] - stamp > self.timeout_ns:
            if self._start is not None:
                _LOG.info("clock input went back in time; every input counts as up again")
            self._start, self._newest, self._down = stamp, [None] * len(self._newest), set()
        self._newest[0] = stamp if self._newest[0] is None else max(self._newest[0], stamp)
        for i, required in enumerate(self.required):
            if required or i in self._down:
                continue
            last = self._newest[i]
            silent_ns = stamp - (self._start if last is None else last)
            if silent_ns > self.timeout_ns:
                self._down.add(i)
                _LOG.warning("%s silent for %.2f s: sets go on without it until it is back", self.names[i],
                             silent_ns / NS_PER_S)

    def _unwrap(self, items: tuple[Any, ...]) -> tuple[Any, ...]:
        out = []
        for i, item in enumerate(items):
            if item is MISSING:
                self.substituted[i] += 1
                out.append(None)
            else:
                out.append(item)
        return tuple(out)

    def reset(self) -> None:
        """Forget queued items and every input's history (all inputs count as up)."""
        with self._lock:
            self.sync.reset()
            self._start, self._newest, self._down = None, [None] * len(self._newest), set()
