"""Approximate-time synchronisation of N timestamped streams, without ROS.

This is the `approximate` policy of the node, the bag evaluator and the
benchmarks (`reception.build_synchronizer`), so live and offline runs pair
sensor data the same way. Matching follows ROS 2 `message_filters`' Python
`ApproximateTimeSynchronizer`; what this class adds is per-input latency
offsets, recovery from time jumping backwards, counters for diagnostics, and a
search that stays cheap with many inputs.

Algorithm (every stamp below is ``stamp_ns + offset`` of its input):

1. The new item is stored in its input's queue, keyed by stamp (an item with
   the same stamp on that input is replaced). While the queue holds more than
   `queue_size` items the one with the *oldest stamp* is dropped; if that is
   the new item itself, nothing more happens.
2. The new item is the pivot: only sets that contain it are considered. For
   every other input, the candidates are its queued items within slop of the
   pivot, ordered by distance to the pivot (ties: the item that arrived first).
   An input with no candidate means no set.
3. The set chosen is the *first* in the lexicographic order of those candidate
   lists (input 0's closest candidate first, then input 1's, ...) whose spread
   ``max(stamp) - min(stamp)`` is strictly less than slop -- exactly the first
   feasible tuple `itertools.product` over the lists would meet, which is what
   message_filters returns. At most one set is produced per `add`; its items
   leave their queues, all other items stay until matched or dropped.
4. Instead of enumerating the product (O(K^(N-1)) for K candidates per input),
   the first feasible tuple is built one input at a time: take the first
   candidate for which the partial set can still be completed. Completability
   is exact: a completion exists iff some window ``[a, a + slop)`` that holds
   the partial set's span holds a candidate of every remaining input, and it is
   enough to try windows starting at the partial minimum or at a candidate
   below it. Cost per `add` is polynomial, about O(N^3 K^2 log K) in the worst
   case and O(N^2 log K) when the closest candidates match.

Time going backwards on an input by more than `backwards_tolerance_s`
(default: slop) behind the newest stamp that input has delivered -- a bag that
loops, a simulator that restarts -- clears every queue and is counted in
`stats.resets`, so stale items from the previous timeline never pair with new
ones. Pass ``math.inf`` to keep message_filters' behaviour of queueing
out-of-order items.
"""
from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

_LOG = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000


def slop_to_ns(slop_s: float) -> int:
    """Seconds -> integer ns exactly as rclpy's Duration(seconds=slop) does (truncation, not rounding), which is
    what message_filters compares against: 0.0638 s is 63 799 999 ns there, so it is here."""
    return int(slop_s * NS_PER_S)


@dataclass
class SyncStats:
    """Counters for diagnostics; per-input lists are indexed like the inputs.

    For every input ``received == matched + dropped + cleared + rejected +
    queued`` holds, so a starving input shows up as which counter grows.
    """

    received: list[int]
    #: Items that left a queue unmatched: pushed out by `queue_size` (oldest
    #: stamp first) or replaced by a later item with the same stamp.
    dropped: list[int]
    #: Items discarded by a reset (time jump or an explicit `reset()`).
    cleared: list[int]
    #: Items without a stamp refused because `allow_headerless` is False.
    rejected: list[int]
    #: Matched sets produced.
    matched: int = 0
    #: Automatic resets because an input's time jumped backwards.
    resets: int = 0

    @classmethod
    def zeros(cls, num_inputs: int) -> "SyncStats":
        return cls(received=[0] * num_inputs, dropped=[0] * num_inputs,
                   cleared=[0] * num_inputs, rejected=[0] * num_inputs)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able copy (for diagnostics messages and reports)."""
        return asdict(self)


@dataclass
class _InputQueue:
    """Items of one input, sorted by stamp; the arrival number breaks distance ties."""

    stamps: list[int] = field(default_factory=list)
    entries: dict[int, tuple[int, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.stamps)

    def __contains__(self, stamp: int) -> bool:
        return stamp in self.entries

    def push(self, stamp: int, arrival: int, item: Any) -> bool:
        """Store an item; True if it replaced one with the same stamp.

        A replacement keeps the old arrival number, as a dict keeps the
        position of a re-assigned key.
        """
        old = self.entries.get(stamp)
        if old is not None:
            self.entries[stamp] = (old[0], item)
            return True
        bisect.insort(self.stamps, stamp)
        self.entries[stamp] = (arrival, item)
        return False

    def drop_oldest(self) -> None:
        del self.entries[self.stamps.pop(0)]

    def take(self, stamp: int) -> Any:
        del self.stamps[bisect.bisect_left(self.stamps, stamp)]
        return self.entries.pop(stamp)[1]

    def arrival(self, stamp: int) -> int:
        return self.entries[stamp][0]

    def between(self, lo: int, hi: int) -> list[int]:
        """Stamps in [lo, hi], ascending."""
        return self.stamps[bisect.bisect_left(self.stamps, lo):bisect.bisect_right(self.stamps, hi)]

    def clear(self) -> int:
        count = len(self.stamps)
        self.stamps.clear()
        self.entries.clear()
        return count


def _has_stamp_in(sorted_stamps: list[int], lo: int, hi: int) -> bool:
    j = bisect.bisect_left(sorted_stamps, lo)
    return j < len(sorted_stamps) and sorted_stamps[j] <= hi


class ApproximateTimeSynchronizer:
    """Pairs items from `num_inputs` streams whose stamps lie within `slop_s`.

    Feed every item with `add`; it returns the matched sets that item
    completed (zero or one), each a tuple of items in input order. Thread-safe:
    `add` may be called from several executor threads.

    Args:
        num_inputs: number of streams (>= 1).
        queue_size: items kept per input while waiting for partners (>= 1).
        slop_s: largest spread of stamps within one set, exclusive, seconds (> 0).
        offsets_s: per input, added to its stamps before matching, seconds
            (e.g. ``-0.03`` for a camera whose stamps lag the others by 30 ms).
        allow_headerless: accept items whose stamp is None, stamping them with
            `clock()` on arrival (arrival jitter then becomes stamp error).
        backwards_tolerance_s: how far an input's stamp may fall behind its own
            newest before it counts as a time jump that clears all queues;
            None means `slop_s`, ``math.inf`` never resets.
        clock: integer nanoseconds source for headerless items (the node
            passes its ROS clock so sim time works).
    """

    def __init__(self, num_inputs: int, queue_size: int, slop_s: float,
                 offsets_s: Sequence[float] | None = None, allow_headerless: bool = False, *,
                 backwards_tolerance_s: float | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        if num_inputs < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        slop_ns = slop_to_ns(slop_s)
        if not slop_ns >= 1:
            raise ValueError(f"slop_s must be > 0 (at least 1 ns), got {slop_s}")
        offsets = [0.0] * num_inputs if offsets_s is None else [float(o) for o in offsets_s]
        if len(offsets) != num_inputs:
            raise ValueError(f"offsets_s has {len(offsets)} values for {num_inputs} inputs")
        if not all(math.isfinite(o) for o in offsets):
            raise ValueError(f"offsets_s must be finite, got {offsets}")
        tolerance = slop_s if backwards_tolerance_s is None else backwards_tolerance_s
        if not tolerance >= 0:
            raise ValueError(f"backwards_tolerance_s must be >= 0, got {backwards_tolerance_s}")

        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self.slop_s = slop_s
        self.offsets_s = tuple(offsets)
        self.allow_headerless = allow_headerless
        self.backwards_tolerance_s = tolerance
        self.stats = SyncStats.zeros(num_inputs)
        self._clock = clock
        # A set is valid iff max - min < slop, i.e. <= slop - 1 in integer ns.
        self._span_ns = slop_ns - 1
        self._offsets_ns = [round(o * NS_PER_S) for o in offsets]
        self._tolerance_ns = math.inf if math.isinf(tolerance) else round(tolerance * NS_PER_S)
        self._queues = [_InputQueue() for _ in range(num_inputs)]
        self._newest: list[int | None] = [None] * num_inputs
        self._arrivals = 0
        self._warned_headerless = False
        self._lock = threading.Lock()

    def add(self, index: int, stamp_ns: int | None, item: Any) -> list[tuple[Any, ...]]:
        """Queue `item` of input `index` and return the set it completed, if any."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} out of range for {self.num_inputs} inputs")
        with self._lock:
            self.stats.received[index] += 1
            if stamp_ns is None:
                if not self.allow_headerless:
                    self.stats.rejected[index] += 1
                    if not self._warned_headerless:
                        self._warned_headerless = True
                        _LOG.warning("input %d delivered an item without a stamp and allow_headerless "
                                     "is False; such items are ignored", index)
                    return []
                stamp_ns = self._clock()
            stamp = int(stamp_ns) + self._offsets_ns[index]

            newest = self._newest[index]
            if newest is not None and newest - stamp > self._tolerance_ns:
                _LOG.info("input %d went back %.3f s in time; clearing all queues",
                          index, (newest - stamp) / NS_PER_S)
                self._clear()
                self.stats.resets += 1
                newest = None
            self._newest[index] = stamp if newest is None else max(newest, stamp)

            queue = self._queues[index]
            if queue.push(stamp, self._arrivals, item):
                self.stats.dropped[index] += 1
            self._arrivals += 1
            while len(queue) > self.queue_size:
                queue.drop_oldest()
                self.stats.dropped[index] += 1
            if stamp not in queue:
                return []

            chosen = self._first_feasible_set(index, stamp)
            if chosen is None:
                return []
            self.stats.matched += 1
            return [tuple(q.take(s) for q, s in zip(self._queues, chosen))]

    def reset(self) -> None:
        """Forget every queued item and each input's newest stamp (counted as `cleared`)."""
        with self._lock:
            self._clear()

    def queue_lengths(self) -> list[int]:
        """Items currently waiting, per input."""
        with self._lock:
            return [len(q) for q in self._queues]

    def _clear(self) -> None:
        for i, queue in enumerate(self._queues):
            self.stats.cleared[i] += queue.clear()
        self._newest = [None] * self.num_inputs

    def _first_feasible_set(self, pivot: int, stamp: int) -> list[int] | None:
        """Stamps (input order) of the first feasible set containing the pivot, or None."""
        span = self._span_ns
        others = [i for i in range(self.num_inputs) if i != pivot]
        in_reach: dict[int, list[int]] = {}
        for i in others:
            stamps = self._queues[i].between(stamp - span, stamp + span)
            if not stamps:
                return None
            in_reach[i] = stamps
        if not self._completable(stamp, stamp, others, in_reach):
            return None

        chosen = [0] * self.num_inputs
        chosen[pivot] = stamp
        lo = hi = stamp
        for k, i in enumerate(others):
            queue = self._queues[i]
            by_distance = sorted(in_reach[i], key=lambda s: (abs(s - stamp), queue.arrival(s)))
            rest = others[k + 1:]
            for s in by_distance:
                new_lo, new_hi = min(lo, s), max(hi, s)
                if self._completable(new_lo, new_hi, rest, in_reach):
                    chosen[i], lo, hi = s, new_lo, new_hi
                    break
            else:  # the previous step guaranteed a completion exists
                raise AssertionError("approximate sync search lost a feasible completion")
        return chosen

    def _completable(self, lo: int, hi: int, rest: list[int], in_reach: dict[int, list[int]]) -> bool:
        """Can a set spanning [lo, hi] take one candidate from each input in `rest`?

        A feasible completion has a minimum m (lo or a candidate below it); the
        window [m, m + span] then holds everything. So trying those m suffices.
        """
        span = self._span_ns
        if hi - lo > span:
            return False
        if not rest:
            return True
        starts = {lo}
        for i in rest:
            stamps = in_reach[i]
            starts.update(stamps[bisect.bisect_left(stamps, hi - span):bisect.bisect_left(stamps, lo)])
        return any(all(_has_stamp_in(in_reach[i], a, a + span) for i in rest) for a in starts)
