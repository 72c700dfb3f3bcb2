"""The node's default synchronisation policy: every left image gets a set, whatever the other sensors do.

message_filters' approximate rule (road_seg_core.sync) emits a set only when
every input has a partner, so one lost thermal message loses a left image's
mask. Here the left camera drives: each left image opens a set; each other
input joins with its buffered message nearest in stamp within `slop` (after
its offset; the same message may serve several left images); the set is
released as soon as every input that is up has joined, or once `max_wait` has
passed in stamp time (a newer left image or a newer message of another input
proves it), with the inputs that did not join given as None (absent, validity
0 for the model). Sets leave in the order of their left images.

Stamp time is never the wall clock, so a live node, a bag replayed faster
than real time and sim time behave alike. Stamps that cannot be true are
rejected, never state:

* another input's stamp further than `stamp_window` from the left clock (0,
  negative, years ahead) is rejected (`on_reject(index, item, reason)`, reason
  `stamp_out_of_range`) and counted; it never marks its input as alive, never
  moves a deadline. One that comes before its left image is held until the
  next left image decides.
* a left stamp further than `stamp_window` from the left clock opens a set of
  its own but does not move the clock. Two such left images in a row that
  agree with each other are a new timeline (a bag looping, a global pause, a
  simulator restart): pending sets are released, the buffers keep only what is
  near the new clock, every input is up again (`stats.resets`).

`sensor_timeout` keeps its meaning: an input other than the left that has
delivered nothing usable for that long (in left-stamp time) is down; sets stop
waiting for it until its next usable message (`down_names`).
"""
from __future__ import annotations

import bisect
import logging
import math
import statistics
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from road_seg_core.sync import NS_PER_S, slop_to_ns

_LOG = logging.getLogger(__name__)

#: Called for each rejected item: (input index, item, reason).
RejectHook = Callable[[int, Any, str], None]
OUT_OF_RANGE = "stamp_out_of_range"


@dataclass
class LeftSyncStats:
    """Counters for diagnostics; per-input lists are indexed like the inputs."""

    received: list[int]
    #: Sets released, and per input how many of them went without it (absent for that frame).
    released: int = 0
    missing: list[int] = field(default_factory=list)
    #: Items refused for an impossible stamp (or no stamp), per input.
    rejected: list[int] = field(default_factory=list)
    #: Items pushed out of a full buffer, per input.
    dropped: list[int] = field(default_factory=list)
    #: New timelines (left clock jumped and the next left image confirmed it); left images off the clock.
    resets: int = 0
    clock_jumps: int = 0

    @classmethod
    def zeros(cls, n: int) -> "LeftSyncStats":
        return cls(received=[0] * n, missing=[0] * n, rejected=[0] * n, dropped=[0] * n)

    @property
    def matched(self) -> int:
        """Sets released (the name the approximate policy's counters use)."""
        return self.released

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Held:
    stamp: int
    item: Any
    checked: bool  # near a left stamp (True) or still waiting for the next left image to decide


@dataclass
class _Open:
    """A set opened by a left image, waiting for the others."""

    stamp: int
    item: Any


class LeftDrivenSynchronizer:
    """Input 0 (the left image) opens a set per item; the other inputs join it or are marked absent.

    Args:
        names: one name per input, input 0 the left image.
        slop_s: largest |stamp - left stamp| (exclusive) for an input to join, seconds; truncated to ns like
            rclpy's Duration(seconds=...).
        offsets_s: per input, added to its stamps before matching.
        max_wait_s: stamp time a set waits for missing inputs; 0 = 0.75 of the left period (median of recent left
            stamp intervals), so the next left image releases it.
        stamp_window_s: how far another input's stamp may be from the left clock (and a left stamp from the
            previous left) before it counts as impossible.
        sensor_timeout_s: left-stamp time an input may deliver nothing before sets stop waiting for it; 0 never.
        queue_size: items buffered per input (>= 1).
        on_reject: called with (index, item, reason) for every rejected item.
    """

    def __init__(self, names: Sequence[str], slop_s: float, offsets_s: Sequence[float] | None = None,
                 max_wait_s: float = 0.0, stamp_window_s: float = 2.0, sensor_timeout_s: float = 1.0,
                 queue_size: int = 10, on_reject: RejectHook | None = None) -> None:
        n = len(names)
        offsets = [0.0] * n if offsets_s is None else [float(o) for o in offsets_s]
        if n < 1 or len(offsets) != n:
            raise ValueError(f"need one name and one offset per input, got {n} names and {len(offsets)} offsets")
        if not all(math.isfinite(o) for o in offsets):
            raise ValueError(f"offsets_s must be finite, got {offsets}")
        if not max_wait_s >= 0 or not stamp_window_s > 0 or not sensor_timeout_s >= 0 or queue_size < 1:
            raise ValueError("need max_wait_s >= 0, stamp_window_s > 0, sensor_timeout_s >= 0, queue_size >= 1")
        self.names = tuple(names)
        self.num_inputs = n
        self.queue_size = int(queue_size)
        self.slop_s = float(slop_s)
        self.offsets_s = tuple(offsets)
        self.max_wait_s = float(max_wait_s)
        self.stamp_window_s = float(stamp_window_s)
        self.sensor_timeout_s = float(sensor_timeout_s)
        self.on_reject = on_reject
        self.stats = LeftSyncStats.zeros(n)
        self._span = slop_to_ns(slop_s) - 1  # |d| < slop  <=>  |d| <= slop - 1 ns
        self._offsets = [round(o * NS_PER_S) for o in offsets]
        self._window = round(stamp_window_s * NS_PER_S)
        self._timeout = round(sensor_timeout_s * NS_PER_S)
        self._max_wait = round(max_wait_s * NS_PER_S)
        self._lock = threading.Lock()
        self._held: list[list[_Held]] = [[] for _ in range(n)]
        self._open: list[_Open] = []
        self._clock: int | None = None  # newest left stamp on the current timeline
        self._jump: int | None = None  # the last left stamp off the clock
        self._stamp_time: int | None = None  # newest usable stamp of any input on the current timeline
        self._last_seen: list[int] = [0] * n  # left clock when each input last delivered something usable
        self._down: set[int] = set()
        self._intervals: deque[int] = deque(maxlen=9)

    # -- public ----------------------------------------------------------------------------------------------------
    @property
    def down_names(self) -> tuple[str, ...]:
        """Inputs currently down (`sensor_timeout`), in input order."""
        return tuple(self.names[i] for i in sorted(self._down))

    @property
    def substituted(self) -> list[int]:
        """Per input: released sets that went without it."""
        return self.stats.missing

    @property
    def wait_ns(self) -> int | None:
        """How long (stamp time) a set waits for missing inputs; None until the left period is known."""
        if self._max_wait > 0:
            return self._max_wait
        if not self._intervals:
            return None
        return int(0.75 * statistics.median(self._intervals))

    def add(self, index: int, stamp_ns: int | None, item: Any) -> list[tuple[Any, ...]]:
        """Feed one item of input `index`; returns the sets released, each a tuple in input order (None: absent)."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} out of range for {self.num_inputs} inputs")
        with self._lock:
            self.stats.received[index] += 1
            if stamp_ns is None:
                self._reject(index, item, "no_stamp")
                return []
            stamp = int(stamp_ns) + self._offsets[index]
            return self._on_left(stamp, item) if index == 0 else self._on_other(index, stamp, item)

    def flush(self) -> list[tuple[Any, ...]]:
        """Release every open set now (the end of a bag: no later message will complete them)."""
        with self._lock:
            return self._release(list(self._open))

    def reset(self) -> None:
        """Forget every held item, open set and clock (all inputs up again)."""
        with self._lock:
            self._held = [[] for _ in range(self.num_inputs)]
            self._open, self._clock, self._jump, self._stamp_time = [], None, None, None
            self._down, self._intervals = set(), deque(maxlen=9)

    # -- left images -----------------------------------------------------------------------------------------------
    def _near(self, a: int, b: int | None) -> bool:
        return b is not None and abs(a - b) <= self._window

    def _on_left(self, stamp: int, item: Any) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        back = self._clock - stamp if self._clock is not None else 0
        if self._clock is None:
            self._new_timeline(stamp)
        elif self._near(stamp, self._clock) and back <= max(self._span, self.wait_ns or 0):
            if stamp > self._clock:
                self._intervals.append(stamp - self._clock)
            self._clock = max(self._clock, stamp)
            self._stamp_time = max(self._stamp_time, self._clock)
            self._jump = None
        elif self._near(stamp, self._clock) or self._jump is not None and self._near(stamp, self._jump):
            # Back in time within the window (a short bag looping), or a second left image off the clock that
            # agrees with the first: a new timeline.
            _LOG.info("left stamps moved %.3f s: new timeline, every input counts as up again", -back / NS_PER_S)
            out += self._release(list(self._open))
            self.stats.resets += 1
            self._new_timeline(stamp)
        else:  # far off the clock: an impossible stamp, or the first image of a new timeline; the next one decides
            self.stats.clock_jumps += 1
            self._jump = stamp
        out += self._release(self._expired(stamp))
        self._decide_held()
        self._update_down()
        self._open.append(_Open(stamp, item))
        if len(self._open) > self.queue_size:
            out += self._release(self._open[:len(self._open) - self.queue_size])
        return out + self._release_complete()

    def _new_timeline(self, stamp: int) -> None:
        self._clock, self._jump, self._stamp_time = stamp, None, stamp
        self._last_seen = [stamp] * self.num_inputs
        self._down = set()
        for held in self._held:  # items not yet decided stay: the next step decides them (and counts rejections)
            held[:] = [h for h in held if not h.checked or self._near(h.stamp, stamp)]

    def _expired(self, left_stamp: int) -> list[_Open]:
        """Open sets a new left image releases: on the clock, those whose wait has passed (or, with the left
        period not yet known, every older one); off the clock, those not near the new image."""
        wait = self.wait_ns
        left_on_clock = self._near(left_stamp, self._clock)
        out = []
        for s in self._open:
            if self._near(s.stamp, self._clock):
                if left_on_clock and (left_stamp > s.stamp if wait is None else left_stamp >= s.stamp + wait):
                    out.append(s)
            elif not self._near(s.stamp, left_stamp):
                out.append(s)
        return out

    def _decide_held(self) -> None:
        """Items that came before any left image near them: keep those now near one, reject the others."""
        refs = [self._clock, self._jump] + [s.stamp for s in self._open]
        for index in range(1, self.num_inputs):
            keep = []
            for h in self._held[index]:
                if h.checked:
                    keep.append(h)
                elif any(self._near(h.stamp, r) for r in refs):
                    h.checked = True
                    keep.append(h)
                    if self._near(h.stamp, self._clock):
                        self._seen(index)
                else:
                    self._reject(index, h.item, OUT_OF_RANGE)
            self._held[index] = keep

    def _update_down(self) -> None:
        if self._timeout <= 0 or self._clock is None:
            return
        for i in range(1, self.num_inputs):
            silent = self._clock - self._last_seen[i]
            if i not in self._down and silent > self._timeout:
                self._down.add(i)
                _LOG.debug("%s silent for %.2f s: sets go on without it until it is back", self.names[i],
                             silent / NS_PER_S)

    # -- other inputs ----------------------------------------------------------------------------------------------
    def _on_other(self, index: int, stamp: int, item: Any) -> list[tuple[Any, ...]]:
        refs = [self._jump] + [s.stamp for s in self._open]
        on_clock = self._near(stamp, self._clock)
        checked = on_clock or any(self._near(stamp, r) for r in refs)
        held = self._held[index]
        stamps = [h.stamp for h in held]
        position = bisect.bisect_right(stamps, stamp)
        held.insert(position, _Held(stamp, item, checked))
        while len(held) > self.queue_size:
            oldest = held.pop(0)
            self.stats.dropped[index] += 1
            if not oldest.checked:
                self._reject(index, oldest.item, OUT_OF_RANGE)
        out: list[tuple[Any, ...]] = []
        if on_clock:
            self._seen(index)
            self._stamp_time = max(self._stamp_time, stamp)
            wait = self.wait_ns
            if wait is not None:
                out += self._release([s for s in self._open
                                      if self._near(s.stamp, self._clock) and self._stamp_time >= s.stamp + wait])
        return out + self._release_complete()

    def _seen(self, index: int) -> None:
        self._last_seen[index] = self._clock
        if index in self._down:
            self._down.discard(index)
            _LOG.debug("%s is back: sets include it again", self.names[index])

    # -- releasing -------------------------------------------------------------------------------------------------
    def _nearest(self, index: int, stamp: int) -> _Held | None:
        held = self._held[index]
        stamps = [h.stamp for h in held]
        j = bisect.bisect_left(stamps, stamp)
        best = None
        for k in (j - 1, j):
            if 0 <= k < len(held) and abs(held[k].stamp - stamp) <= self._span:
                if best is None or abs(held[k].stamp - stamp) < abs(best.stamp - stamp):
                    best = held[k]
        return best

    def _complete(self, s: _Open) -> bool:
        return all(i in self._down or self._nearest(i, s.stamp) is not None for i in range(1, self.num_inputs))

    def _release_complete(self) -> list[tuple[Any, ...]]:
        """Release every complete open set, and the older ones before it."""
        last = max((k for k, s in enumerate(self._open) if self._complete(s)), default=-1)
        return self._release(self._open[:last + 1])

    def _release(self, sets: list[_Open]) -> list[tuple[Any, ...]]:
        """Release `sets` (open sets, in their order) with each input's nearest held item within slop, or None."""
        out = []
        for s in sets:
            items: list[Any] = [s.item]
            for i in range(1, self.num_inputs):
                h = self._nearest(i, s.stamp)
                items.append(None if h is None else h.item)
                if h is None:
                    self.stats.missing[i] += 1
            self.stats.released += 1
            out.append(tuple(items))
        if sets:
            gone = {id(s) for s in sets}
            self._open = [s for s in self._open if id(s) not in gone]
            self._forget_stale()
        return out

    def _forget_stale(self) -> None:
        """Drop held items no open or future set on this timeline can use (older than the clock minus slop)."""
        if self._clock is None:
            return
        oldest = min([self._clock] + [s.stamp for s in self._open if self._near(s.stamp, self._clock)])
        for i in range(1, self.num_inputs):
            held = self._held[i]
            k = 0
            while k < len(held) and held[k].checked and held[k].stamp < oldest - self._span \
                    and self._near(held[k].stamp, self._clock):
                k += 1
            del held[:k]

    def _reject(self, index: int, item: Any, reason: str) -> None:
        self.stats.rejected[index] += 1
        if self.on_reject is not None:
            self.on_reject(index, item, reason)
