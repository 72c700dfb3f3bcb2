"""`sync.policy: message_filters`: the real ROS 2 `message_filters.ApproximateTimeSynchronizer` behind the interface
every road_seg_core synchroniser has (`add(index, stamp_ns, item) -> sets`, `stats`, `queue_size`, `slop_s`).

This is the one module of road_seg_core that needs a ROS package at run time: message_filters imports rclpy
(its stamps are `rclpy.time.Time`, its slop an `rclpy.duration.Duration`). Both are imported only when this
policy is built (`load_message_filters`), so road_seg_core stays importable, and the other policies usable, without
ROS. It lives in road_seg_core rather than road_seg_ros because `build_synchronizer` serves the node, `road-seg
eval-bag` and the benchmarks alike: an offline evaluation with this policy runs the same message_filters code as
the node.

message_filters has no per-input offsets and no sensor timeout (it waits for every input); the configuration
refuses both with this policy (`node_config.SyncSettings`).
"""
from __future__ import annotations

import threading
from types import ModuleType
from typing import Any, Callable

from road_seg_core.input_plan import StartupError
from road_seg_core.sync import SyncStats

POLICY = "message_filters"

#: Called for each item refused before it reaches message_filters: (input index, item, reason).
RejectHook = Callable[[int, Any, str], None]


def load_message_filters() -> ModuleType:
    """The message_filters module, or StartupError (one line) saying why this policy cannot run here."""
    try:
        import message_filters  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        if exc.name == "message_filters":
            raise StartupError(f"sync.policy {POLICY} needs the ROS 2 message_filters package, which is not "
                               "installed (a ROS install: apt install ros-jazzy-message-filters; or choose "
                               "sync.policy left or approximate)") from None
        raise StartupError(f"sync.policy {POLICY}: message_filters cannot be imported: {exc}") from None
    except ImportError as exc:
        raise StartupError(f"sync.policy {POLICY}: message_filters cannot be imported: {exc}") from None
    return message_filters


class _Stamped:
    """What message_filters reads of a message: `header.stamp`. The stamp is the one the reception path passes
    (the header's, or a caller's override), as an rclpy Time so that any message library's items (rclpy's,
    rosbags') can be synchronised; ROS_TIME is the clock type message_filters gives a header stamp."""

    __slots__ = ("header", "stamp", "item")

    def __init__(self, stamp: Any, item: Any) -> None:
        self.header = self
        self.stamp = stamp
        self.item = item


class MessageFiltersSynchronizer:
    """message_filters' ApproximateTimeSynchronizer over `num_inputs` SimpleFilters, one per input.

    `add` signals the item on its input's filter and returns the set message_filters emitted for it, if any (its
    registered callback collects the set). Thread-safe, as road_seg_core's synchronisers are.

    Stamps before 1970 cannot be an rclpy Time (message_filters would raise in the subscription callback): such
    items are refused, counted in `stats.rejected` and reported through `on_reject` ("stamp_out_of_range").
    """

    implementation = POLICY

    def __init__(self, num_inputs: int, queue_size: int, slop_s: float, on_reject: RejectHook | None = None) -> None:
        message_filters = load_message_filters()
        from rclpy.clock import ClockType
        from rclpy.time import Time

        self._time = lambda ns: Time(nanoseconds=ns, clock_type=ClockType.ROS_TIME)
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self.slop_s = slop_s
        self.offsets_s = (0.0,) * num_inputs
        self.on_reject = on_reject
        self.stats = SyncStats.zeros(num_inputs)
        self._filters = [message_filters.SimpleFilter() for _ in range(num_inputs)]
        self._sync = message_filters.ApproximateTimeSynchronizer(self._filters, queue_size, slop_s)
        self._sync.registerCallback(self._on_set)
        self._emitted: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def add(self, index: int, stamp_ns: int, item: Any) -> list[tuple[Any, ...]]:
        """Feed one item of input `index`; the sets (zero or one) it completed, items in input order."""
        with self._lock:
            self.stats.received[index] += 1
            if stamp_ns < 0:
                self.stats.rejected[index] += 1
                rejected = True
            else:
                rejected = False
                self._filters[index].signalMessage(_Stamped(self._time(int(stamp_ns)), item))
            self._count_dropped()
            sets, self._emitted = self._emitted, []
        if rejected and self.on_reject is not None:
            self.on_reject(index, item, "stamp_out_of_range")
        return sets

    def _on_set(self, *msgs: _Stamped) -> None:
        self._emitted.append(tuple(m.item for m in msgs))
        self.stats.matched += 1

    def _count_dropped(self) -> None:
        # message_filters drops silently (the oldest stamp beyond queue_size, or an item replaced by one with the
        # same stamp); what is neither matched, rejected nor still queued was dropped.
        for i, queue in enumerate(self._sync.queues):
            s = self.stats
            s.dropped[i] = s.received[i] - s.matched - s.rejected[i] - s.cleared[i] - len(queue)

    def queue_lengths(self) -> list[int]:
        with self._lock:
            return [len(q) for q in self._sync.queues]
