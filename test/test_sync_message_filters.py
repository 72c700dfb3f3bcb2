"""The `approximate` policy emits exactly what the real ROS 2 message_filters emits (differential test), and the
`message_filters` policy (the real package behind `build_synchronizer`) emits what the `approximate` policy emits.

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

from road_seg_core.input_plan import plan_inputs  # noqa: E402
from road_seg_core.mf_sync import MessageFiltersSynchronizer  # noqa: E402
from road_seg_core.node_config import PerceptionConfig  # noqa: E402
from road_seg_core.reception import build_synchronizer  # noqa: E402
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


def random_case(seed: int, inputs: tuple[int, ...] = (2, 3, 4), backwards: bool = True
                ) -> tuple[int, int, float, list[tuple[int, int]]]:
    """(inputs, queue size, slop, events): a random interleaving of stamped messages, with stamps exactly at and
    just inside the slop. `backwards`: an input's stamp may fall up to 30 ms behind its own newest (message_filters
    queues it; road_seg_core's `approximate` policy, whose tolerance is the slop, would start a new timeline)."""
    rng = random.Random(seed)
    n = rng.choice(inputs)
    queue = rng.choice([1, 2, 5, 10])
    slop = rng.choice([0.0157, 0.02, 0.05, 0.0638, 0.1])
    events = []
    t = 1_700_000_000 * S
    for _ in range(rng.randint(50, 200)):
        t += rng.randint(0, 40_000_000)
        index = rng.randrange(n)
        spread = rng.randint(-30_000_000, 30_000_000) if backwards else rng.randint(0, int(slop * S))
        jitter = rng.choice([0, spread, int(slop * S), int(slop * S) - 1])
        events.append((index, t + jitter))
    return n, queue, slop, events


@pytest.mark.parametrize("seed", range(12))
def test_random_sequences_give_the_same_sets(seed):
    real, ours = _both(*random_case(seed))
    assert ours == real


# -- sync.policy message_filters: the real package inside build_synchronizer, as the node and eval-bag run it -----
MODALITIES = {2: ("rgb", "thermal"), 3: ("rgb", "depth", "thermal")}


def _policy(policy: str, n: int, queue: int, slop: float, events: list[tuple[int, int]]):
    cfg = PerceptionConfig.from_flat({"sync.policy": policy, "sync.queue_size": queue, "sync.slop": slop,
                                      "sync.sensor_timeout": 0.0})
    sync = build_synchronizer(plan_inputs(MODALITIES[n], cfg), cfg)
    sets = []
    for tag, (index, stamp) in enumerate(events):
        sets += sync.add(index, stamp, tag)
    return sync, sets


@pytest.mark.parametrize("seed", range(16))
def test_the_message_filters_policy_emits_what_the_approximate_policy_emits(seed):
    n, queue, slop, events = random_case(seed, inputs=(2, 3), backwards=False)
    mf, mf_sets = _policy("message_filters", n, queue, slop, events)
    core, core_sets = _policy("approximate", n, queue, slop, events)
    assert isinstance(mf, MessageFiltersSynchronizer) and isinstance(core, ApproximateTimeSynchronizer)
    assert mf_sets == core_sets
    assert mf.stats == core.stats and mf.queue_lengths() == core.queue_lengths()
    assert mf.stats.resets == 0 and all(len(s) == n for s in mf_sets)


def test_the_message_filters_policy_refuses_stamps_before_1970():
    cfg = PerceptionConfig.from_flat({"sync.policy": "message_filters", "sync.sensor_timeout": 0.0})
    refused = []
    sync = build_synchronizer(plan_inputs(MODALITIES[2], cfg), cfg, lambda *args: refused.append(args))
    assert sync.add(1, -1000 * S, "bad") == [] and refused == [(1, "bad", "stamp_out_of_range")]
    assert sync.add(0, 5 * S, "left") == [] and sync.add(1, 5 * S, "thermal") == [("left", "thermal")]
    assert sync.stats.rejected == [0, 1] and sync.stats.matched == 1
