"""The output bag of `eval-bag --write-bag`: the left image and the node's outputs, for scrubbing in RViz.

Topics and encodings are what perception_node publishes (node name `road_seg`,
no namespace): `/road_seg/drivable_mask`, `/road_seg/obstacle_mask` and
`/road_seg/labels` (`mono8`), `/road_seg/overlay` (`rgb8`), each with the left
image's header, so config/perception.rviz shows them as it shows the live node.
The left image is copied unchanged on its own topic. Every message is recorded
at the left image's recording time (outputs 1 us apart after it), so
`ros2 bag play OUT --clock` replays inputs and outputs in step.
"""
from __future__ import annotations

from pathlib import Path

from road_seg_core.bag import msgs
from road_seg_core.bag.bagio import open_writer
from road_seg_core.bag.replay import ReplayedFrame
from road_seg_core.node_config import NODE_NAME

#: Output key -> (topic suffix, encoding), as perception_node's publishers.
OUTPUTS = {"drivable": ("drivable_mask", "mono8"), "obstacle": ("obstacle_mask", "mono8"),
           "labels": ("labels", "mono8"), "overlay": ("overlay", "rgb8")}


def output_topics(node_name: str = NODE_NAME) -> dict[str, str]:
    return {key: f"/{node_name}/{suffix}" for key, (suffix, _) in OUTPUTS.items()}


class MaskBagWriter:
    """Writes one ReplayedFrame at a time; use as a context manager."""

    def __init__(self, path: str | Path, storage: str, left_topic: str, compress: bool = False) -> None:
        self._writer = open_writer(path, storage, compress)
        qos = [msgs.offered_qos(reliable=True, depth=5)]  # the node's output QoS
        add = self._writer.add_connection
        self._left = add(left_topic, msgs.IMAGE, typestore=msgs.TYPESTORE, offered_qos_profiles=qos)
        self._outputs = {key: add(topic, msgs.IMAGE, typestore=msgs.TYPESTORE, offered_qos_profiles=qos)
                         for key, topic in output_topics().items()}
        self.frames = 0

    def write(self, replayed: ReplayedFrame) -> None:
        masks = replayed.result.masks
        stamp, frame_id, t = replayed.frame.stamp_ns, replayed.frame.frame_id, replayed.left_log_ns
        self._writer.write(self._left, t, replayed.left_raw)
        arrays = {"drivable": masks.drivable, "obstacle": masks.obstacle, "labels": masks.labels,
                  "overlay": masks.overlay}
        for k, (key, (_, encoding)) in enumerate(OUTPUTS.items(), start=1):
            if arrays[key] is None:
                raise ValueError("the output bag needs overlays: run the pipeline with with_overlay=True")
            msg = msgs.image(arrays[key], encoding, stamp, frame_id)
            self._writer.write(self._outputs[key], t + k * 1_000, msgs.serialize(msg))
        self.frames += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "MaskBagWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
