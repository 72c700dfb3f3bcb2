"""sim_sensors: publishes synthetic drives exactly as a ZED (ROS 2 wrapper v5) and a FLIR Boson would.

Same topics, types and encodings as the car (bgra8 colour, 32FC1 depth in
metres, mono16 thermal counts, CameraInfo, optional stereo_msgs/DisparityImage),
with per-topic stamp jitter and drop rate to exercise synchronisation, plus
ground truth on /sim/labels (mono8 class ids, the left image's header) and
/sim/pothole_ids (mono16: which pothole each pothole pixel is, 0 = none).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from road_seg_core.sensor_spec import (DROPPABLE, GT_TOPIC, JITTERED, POTHOLE_IDS_TOPIC, PUBLISHED_TOPIC, RIGHT_FRAME,
                                      Topics, jitter_ns, scene_messages)
from road_seg_core.synthetic import SceneStream, SyntheticScene
from road_seg_ros.conversions import camera_info, sensor_image_message
from road_seg_ros.node_exit import end_process, interrupt_once


@dataclass
class SimMessages:
    """One scene, encoded once; only the headers change when it is published again."""

    left: Image
    right: Image
    depth: Image
    disparity: DisparityImage
    thermal: Image
    labels: Image
    left_info: CameraInfo
    right_info: CameraInfo
    pothole_ids: Image | None = None  # which pothole each ground-truth pothole pixel is (mono16), where known


def encode_scene(scene: SyntheticScene, with_disparity: bool) -> SimMessages:
    """The rclpy messages the sensors would send for a synthetic scene (`sensor_spec.scene_messages`)."""
    spec = scene_messages(scene, with_disparity)
    msgs = {key: sensor_image_message(img, Header(frame_id=img.frame_id)) for key, img in spec.images.items()}
    if "disparity" not in msgs:
        msgs["disparity"] = DisparityImage()
    left_header = Header(frame_id=spec.left_frame)
    return SimMessages(**msgs, left_info=camera_info(spec.intrinsics, left_header),
                       right_info=camera_info(spec.intrinsics, Header(frame_id=RIGHT_FRAME), right=True))


class SimSensors(Node):
    def __init__(self) -> None:
        super().__init__("sim_sensors")
        p = self.declare_parameter
        self.rate = float(p("rate", 10.0).value)
        width, height = int(p("width", 1280).value), int(p("height", 720).value)
        seed = int(p("seed", 0).value)
        conditions = tuple(p("conditions", ["day", "night", "fog"]).value)
        frames_per_condition = int(p("frames_per_condition", 10).value)  # 0: one condition, drawn by the seed
        showcase = bool(p("showcase", True).value)  # kerbed street, every obstacle kind every 25 m
        loop_frames = int(p("loop_frames", 30).value)  # pre-rendered and cycled, so 60 Hz is reachable on a CPU
        self.max_frames = int(p("max_frames", 0).value)  # 0 = run until stopped
        self.publish_disparity = bool(p("publish_disparity", False).value)
        self.publish_right = bool(p("publish_right", True).value)
        self.jitter_ms = {k: float(p(f"jitter_ms.{k}", 0.0).value) for k in JITTERED}
        self.drop_rate = {k: float(p(f"drop_rate.{k}", 0.0).value) for k in DROPPABLE}
        topics = Topics(**{k: str(p(f"topics.{k}", v).value) for k, v in vars(Topics()).items()})
        self.rng = np.random.default_rng(seed)

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            "left": self.create_publisher(Image, topics.left, qos),
            "right": self.create_publisher(Image, topics.right, qos),
            "depth": self.create_publisher(Image, topics.depth, qos),
            "disparity": self.create_publisher(DisparityImage, topics.disparity, qos),
            "thermal": self.create_publisher(Image, topics.thermal, qos),
            "labels": self.create_publisher(Image, GT_TOPIC, qos),
            "pothole_ids": self.create_publisher(Image, POTHOLE_IDS_TOPIC, qos),
            "left_info": self.create_publisher(CameraInfo, topics.left_info, qos),
            "right_info": self.create_publisher(CameraInfo, topics.right_info, qos),
        }
        stream = SceneStream(seed=seed, width=width, height=height, conditions=conditions,
                             frames_per_condition=frames_per_condition or None, showcase=showcase)
        count = loop_frames if loop_frames > 0 else 1
        self.frames = [encode_scene(next(stream), self.publish_disparity) for _ in range(count)]
        self.stream = None if loop_frames > 0 else stream
        self.sent = 0
        self.published = {key: 0 for key in ("left",) + JITTERED}
        self.timer = self.create_timer(1.0 / self.rate, self._tick)
        # What was published, per input, once a second (on its own topic, so /diagnostics stays the node's):
        # benchmarks count losses between here and the node.
        self.pub_diag = self.create_publisher(DiagnosticArray, PUBLISHED_TOPIC, 10)
        self.create_timer(1.0, self._publish_counts)
        self.get_logger().info(f"publishing {width}x{height} synthetic ZED + Boson at {self.rate:g} Hz "
                               f"({'live' if self.stream else f'{count} frames looped'})")

    def _stamp(self, base_ns: int, key: str) -> Time:
        return Time(nanoseconds=base_ns + jitter_ns(self.rng, self.jitter_ms.get(key, 0.0))).to_msg()

    def _tick(self) -> None:
        if self.max_frames and self.sent >= self.max_frames:
            self.timer.cancel()
            self.get_logger().info(f"published {self.sent} frames; done")
            raise SystemExit(0)
        if self.stream is not None:
            msgs = encode_scene(next(self.stream), self.publish_disparity)
        else:
            msgs = self.frames[self.sent % len(self.frames)]
        now_ns = self.get_clock().now().nanoseconds
        left_stamp = Time(nanoseconds=now_ns).to_msg()
        for m in (msgs.left, msgs.labels, msgs.left_info, msgs.right_info, msgs.pothole_ids):
            if m is not None:
                m.header.stamp = left_stamp
        msgs.right.header.stamp = self._stamp(now_ns, "right")
        msgs.depth.header.stamp = self._stamp(now_ns, "depth")
        msgs.thermal.header.stamp = self._stamp(now_ns, "thermal")
        msgs.disparity.header = Header(stamp=self._stamp(now_ns, "disparity"), frame_id=msgs.left.header.frame_id)
        msgs.disparity.image.header = msgs.disparity.header
        self.pubs["left_info"].publish(msgs.left_info)
        self.pubs["right_info"].publish(msgs.right_info)
        for key in ("left", "right", "depth", "disparity", "thermal"):
            if key == "right" and not self.publish_right or key == "disparity" and not self.publish_disparity:
                continue
            if self.drop_rate.get(key, 0.0) > 0 and self.rng.random() < self.drop_rate[key]:
                continue
            self.pubs[key].publish(getattr(msgs, key))
            self.published[key] += 1
        self.pubs["labels"].publish(msgs.labels)
        if msgs.pothole_ids is not None:
            self.pubs["pothole_ids"].publish(msgs.pothole_ids)
        self.sent += 1

    def _publish_counts(self) -> None:
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name().lstrip('/')}: published",
                                  level=DiagnosticStatus.OK, message="publishing")
        status.values = [KeyValue(key=f"published.{k}", value=str(n)) for k, n in self.published.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)


def main(args: list[str] | None = None) -> int:
    interrupt_once()
    rclpy.init(args=args)
    node = None
    try:
        node = SimSensors()  # pre-renders its scenes: Ctrl-C may come before it spins
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    end_process(0)  # shut down cleanly: skip the interpreter teardown (see node_exit)


if __name__ == "__main__":
    sys.exit(main())
