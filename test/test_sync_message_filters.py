"""The `approximate` policy emits exactly what the real ROS 2 message_filters emits (differential test).

The real package (jazzy) is in ../shared/ros2_overlay, or on a ROS install's path; skipped where neither is.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

OVERLAY = Path(__file__).resolve().parent.parent.parent / "shared" / "ros2_overlay"
if OVERLAY.is_dir() and str(OVERLAY) not in sys.path:
    sys.path.append(str(OVERLAY))
message_filters = pytest.importorskip("message_filters")
from builtin_interfaces.msg import Time  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from road_seg_core.sync import ApproximateTimeSynchronizer  # noqa: E402

S = 1_000_000_000


class _Msg:
    def __init__(self, stamp: int, tag: int) -> None:
        self.header = Header(stamp=Time(sec=stamp // S, nanosec=stamp % S))
        self.tag = tag


def _both(n: int, queue: int, slop: float, events: list[tuple[int, int]]) -> tuple[list, list]:
    filters = [message_filters.SimpleFilter() for _ in range(n)]
    real = message_filters.ApproximateTimeSynchronizer(filters, queue, slop)
    got_real: list[tuple[int, ...]] = []
    real.registerCallback(lambda *msgs: got_real.append(tuple(m.tag for m in msgs)))
    ours = ApproximateTimeSynchronizer(n, queue, slop, backwards_tolerance_s=float("inf"))
    got_ours: list[tuple[int, ...]] = []
    for tag, (index, stamp) in enumerate(events):
        filters[index].signalMessage(_Msg(stamp, tag))
        got_ours += [tuple(item for item in s) for s in ours.add(index, stamp, tag)]
    return got_real, got_ours


def test_the_slop_is_truncated_as_rclpy_duration_does():
    # 2 inputs, queue 5, slop 0.0638 s: rclpy makes it 63 799 999 ns, so 63 799 999 ns apart is not a set.
    real, ours = _both(2, 5, 0.0638, [(1, 10 * S), (0, 10 * S + 63_799_999), (1, 20 * S), (0, 20 * S + 63_799_998)])
    assert real == ours == [(3, 2)]


@pytest.mark.parametrize("seed", range(12))
def test_random_sequences_give_the_same_sets(seed):
    rng = random.Random(seed)
    n = rng.choice([2, 3, 4])
    queue = rng.choice([1, 2, 5, 10])
    slop = rng.choice([0.0157, 0.02, 0.05, 0.0638, 0.1])
    events = []
    t = 1_700_000_000 * S
    for _ in range(rng.randint(50, 200)):
        t += rng.randint(0, 40_000_000)
        index = rng.randrange(n)
        jitter = rng.choice([0, rng.randint(-30_000_000, 30_000_000), int(slop * S), int(slop * S) - 1])
        events.append((index, t + jitter))
    real, ours = _both(n, queue, slop, events)
    assert ours == real
