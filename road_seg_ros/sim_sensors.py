"""sim_sensors: publishes synthetic drives exactly as a ZED (ROS 2 wrapper v5) and a FLIR Boson would.

Same topics, types and encodings as the car (bgra8 colour, 32FC1 depth in
metres, mono16 thermal counts, CameraInfo, optional stereo_msgs/DisparityImage),
with per-topic stamp jitter and drop rate to exercise synchronisation, plus
ground truth on /sim/labels (mono8 class ids, the left image's header).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from road_seg_core.depth import depth_to_disparity
from road_seg_core.synthetic import SceneStream, SyntheticScene
from road_seg_ros.config import Topics
from road_seg_ros.conversions import array_to_image, camera_info
from road_seg_ros.node_exit import end_process, interrupt_once

GT_TOPIC = "/sim/labels"
JITTERED = ("right", "depth", "disparity", "thermal")


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


def encode_scene(scene: SyntheticScene, with_disparity: bool) -> SimMessages:
    """Encode a synthetic scene into the messages the sensors would send."""
    f = scene.frame
    h = Header(frame_id=f.frame_id or "zed_left_camera_optical_frame")
    bgra = cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGRA)
    right_bgra = cv2.cvtColor(f.right_rgb, cv2.COLOR_RGB2BGRA)
    disp = DisparityImage()
    if with_disparity:
        intr = f.intrinsics
        d = depth_to_disparity(np.nan_to_num(f.depth, nan=0.0), intr.fx, intr.baseline_m).astype(np.float32)
        disp.image = array_to_image(d, "32FC1", h)
        disp.f, disp.t = float(intr.fx), float(intr.baseline_m)
        disp.min_disparity, disp.max_disparity, disp.delta_d = 0.0, float(d.max()), 1.0 / 16
    thermal_header = Header(frame_id="boson_optical_frame")
    return SimMessages(
        left=array_to_image(bgra, "bgra8", h),
        right=array_to_image(right_bgra, "bgra8", Header(frame_id="zed_right_camera_optical_frame")),
        depth=array_to_image(f.depth.astype(np.float32), "32FC1", h),
        disparity=disp,
        thermal=array_to_image(f.thermal.astype(np.uint16), "mono16", thermal_header),
        labels=array_to_image(scene.labels, "mono8", h),
        left_info=camera_info(f.intrinsics, h),
        right_info=camera_info(f.intrinsics, Header(frame_id="zed_right_camera_optical_frame"), right=True),
    )


class SimSensors(Node):
    def __init__(self) -> None:
        super().__init__("sim_sensors")
        p = self.declare_parameter
        self.rate = float(p("rate", 10.0).value)
        width, height = int(p("width", 1280).value), int(p("height", 720).value)
        seed = int(p("seed", 0).value)
        conditions = tuple(p("conditions", ["day", "night", "fog"]).value)
        loop_frames = int(p("loop_frames", 30).value)  # pre-rendered and cycled, so 60 Hz is reachable on a CPU
        self.max_frames = int(p("max_frames", 0).value)  # 0 = run until stopped
        self.publish_disparity = bool(p("publish_disparity", False).value)
        self.publish_right = bool(p("publish_right", True).value)
        self.jitter_s = {k: float(p(f"jitter_ms.{k}", 0.0).value) / 1e3 for k in JITTERED}
        self.drop_rate = {k: float(p(f"drop_rate.{k}", 0.0).value) for k in ("left",) + JITTERED}
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
            "left_info": self.create_publisher(CameraInfo, topics.left_info, qos),
            "right_info": self.create_publisher(CameraInfo, topics.right_info, qos),
        }
        stream = SceneStream(seed=seed, width=width, height=height, conditions=conditions)
        count = loop_frames if loop_frames > 0 else 1
        self.frames = [encode_scene(next(stream), self.publish_disparity) for _ in range(count)]
        self.stream = None if loop_frames > 0 else stream
        self.sent = 0
        self.timer = self.create_timer(1.0 / self.rate, self._tick)
        self.get_logger().info(f"publishing {width}x{height} synthetic ZED + Boson at {self.rate:g} Hz "
                               f"({'live' if self.stream else f'{count} frames looped'})")

    def _stamp(self, base_ns: int, key: str) -> Time:
        jitter = self.jitter_s.get(key, 0.0)
        offset = int(self.rng.normal(0.0, jitter) * 1e9) if jitter > 0 else 0
        return Time(nanoseconds=base_ns + offset).to_msg()

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
        for m in (msgs.left, msgs.labels, msgs.left_info, msgs.right_info):
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
        self.pubs["labels"].publish(msgs.labels)
        self.sent += 1


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
