"""Offline replay pairs the same sets as the live node: a bag published with rclpy into perception_node."""
from __future__ import annotations

import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from stereo_msgs.msg import DisparityImage  # noqa: E402

from road_seg_core.engines import create_engine  # noqa: E402
from road_seg_core.pipeline import SegmentationPipeline  # noqa: E402
from road_seg_core.bag.bagio import open_reader  # noqa: E402
from road_seg_core.bag.replay import BagReplay  # noqa: E402
from road_seg_core.node_config import PerceptionConfig  # noqa: E402
from road_seg_core.input_plan import plan_inputs  # noqa: E402
from road_seg_core.launch_plan import ProcessSpec, config_dir, perception_plan  # noqa: E402
from road_seg_core.processes import ProcessGroup  # noqa: E402
from rosutil import RELIABLE, Collector  # noqa: E402
from road_seg_cli.main import main  # noqa: E402

pytestmark = pytest.mark.ros

ROS_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "stereo_msgs/msg/DisparityImage": DisparityImage, "std_msgs/msg/String": String}
LABELS = "/road_seg/labels"
FRAMES = 12


class _NodeSpec(ProcessSpec):
    """The plan's process, run as `python -m road_seg_ros.<executable>` where the console script is not installed."""

    def to_command(self, bin_dir: str | None = None) -> list[str]:
        cmd = super().to_command(bin_dir)
        if Path(cmd[0]).exists():
            return cmd
        return [sys.executable, "-m", f"road_seg_ros.{self.executable}", *cmd[1:]]


def _offline_stamps(bag: Path, checkpoint: Path) -> list[int]:
    cfg = PerceptionConfig.from_flat({**PerceptionConfig.from_yaml(config_dir() / "perception.yaml").flat(),
                                      "sync.policy": "approximate"})
    engine = create_engine(checkpoint, device="cpu")
    with closing(open_reader(bag)) as reader:
        replay = BagReplay(reader, cfg, plan_inputs(tuple(engine.meta.modalities), cfg),
                           SegmentationPipeline(engine, cfg.preprocess_config()))
        return [r.frame.stamp_ns for r in replay.frames()]


def _diag_values(collector: Collector) -> dict[str, str]:
    """The node's latest diagnostics values ({} before the first)."""
    statuses = [s for m in collector.messages["/diagnostics"] for s in m.status if s.name.startswith("road_seg")]
    return {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_offline_sync_selects_the_left_stamps_the_node_processes(ros_domain, bin_dir, tiny_checkpoint, tmp_path):
    bag = tmp_path / "drive"
    # 20 Hz with 15 ms thermal jitter and a 50 ms slop: a thermal image is often within reach of two left images,
    # and drops leave some left images without partners, so which sets form depends on the algorithm itself.
    assert main(["sim", "--record", str(bag), "--frames", str(FRAMES), "--rate", "20", "--width", "160",
                 "--height", "96", "--seed", "11", "--drop-rate", "thermal=0.2,depth=0.1",
                 "--jitter-ms", "thermal=15,depth=5", "--no-progress"]) == 0
    offline = _offline_stamps(bag, tiny_checkpoint)
    assert 0 < len(offline) < FRAMES - 2

    with closing(open_reader(bag)) as reader:
        recorded = [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]
        frame_starts = sorted({t for c, _, t, _ in recorded if c == "/sim/condition"})

    # The approximate (message_filters) policy, whose sets depend on the algorithm itself; the left policy gives
    # every left image a set (test_node_reception).
    spec = perception_plan(model=str(tiny_checkpoint), node_parameters={"device": "cpu",
                                                                        "sync.policy": "approximate"})[0]
    node = _NodeSpec(**vars(spec))
    collector = Collector(ros_domain, {LABELS: Image, "/diagnostics": DiagnosticArray})
    pubs = {topic: collector.node.create_publisher(ROS_TYPES[msgtype], topic, RELIABLE)
            for topic, msgtype, _, _ in recorded}
    cfg = PerceptionConfig.from_yaml(config_dir() / "perception.yaml")
    inputs = [cfg.topics.left, cfg.topics.depth, cfg.topics.thermal]
    try:
        with ProcessGroup.from_plan([node], bin_dir, tmp_path) as procs:
            # Matched both ways: the node's subscriptions to our publishers, and its labels publisher to our
            # subscription (a reliable volatile publisher sends nothing to a subscription it has not matched yet).
            labels_sub = next(s for s in collector.node.subscriptions if s.topic_name == LABELS)
            ready = collector.wait_for(lambda: all(pubs[t].get_subscription_count() > 0 for t in inputs)
                                       and labels_sub.get_publisher_count() > 0, 90, procs)
            assert ready, procs.logs()
            for g, start in enumerate(frame_starts):
                end = frame_starts[g + 1] if g + 1 < len(frame_starts) else float("inf")
                for topic, msgtype, _, raw in (r for r in recorded if start <= r[2] < end):
                    pubs[topic].publish(deserialize_message(raw, ROS_TYPES[msgtype]))
                    time.sleep(0.03)  # one message at a time: the node receives them in recording order
                # Enough time: wait for this frame's output (if it makes a set) before the next frame, so the
                # node never supersedes a set while its worker is busy.
                due = sum(1 for s in offline if s < end)
                collector.wait_for(lambda: collector.count(LABELS) >= due, 20, procs)
            snapshots_before = collector.count("/diagnostics")

            def settled() -> bool:
                """The second diagnostics snapshot after the last message (the node has handled everything sent
                before the first): every set it formed is accounted for, and all its labels have arrived here."""
                diag = _diag_values(collector)
                if collector.count("/diagnostics") < snapshots_before + 2 or not diag:
                    return False
                handled = sum(int(diag[k]) for k in ("published", "dropped_sets", "failed_sets"))
                return (int(diag["synchronised_sets"]) == handled
                        and int(diag["published"]) == collector.count(LABELS) >= len(offline))

            collector.wait_for(settled, 60, procs)
            logs = procs.logs()
        online = [_stamp(m) for m in collector.messages[LABELS]]
    finally:
        collector.close()
    assert online == offline, logs
