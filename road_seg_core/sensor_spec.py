"""The car's sensors as messages: topics, types, encodings, frame ids and camera_info, defined once.

sim_sensors (rclpy), the bag recorder and reader (rosbags) and the node all take
their names and field values from here. Message objects differ between the two
libraries, so this module produces plain field values (`ImageFields`,
`CameraInfoFields`, `SensorImage`) and each library has a tiny adapter that
copies them into its own message class (road_seg_ros.conversions for rclpy,
road_seg_core.bag.msgs for rosbags). Reading goes the other way through
duck-typed functions: rclpy and rosbags messages have the same field names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from road_seg_core.frames import StereoIntrinsics
from road_seg_core.image_codec import NATIVE_IS_BIGENDIAN, encode_image

NS_PER_S = 1_000_000_000

#: Ground truth (mono8 class ids, the left image's header) and condition names of simulated drives.
GT_TOPIC = "/sim/labels"
CONDITION_TOPIC = "/sim/condition"
#: Which pothole each ground-truth pothole pixel belongs to (mono16, 0 = none; the left image's header): recall
#: by object then counts potholes, not the connected components a crack at a grazing angle breaks into.
POTHOLE_IDS_TOPIC = "/sim/pothole_ids"
#: diagnostic_msgs/DiagnosticArray from sim_sensors once a second: messages published so far per input
#: (`published.<input>`), kept off /diagnostics, which is the node's.
PUBLISHED_TOPIC = "/sim/published"

LEFT_FRAME = "zed_left_camera_optical_frame"
RIGHT_FRAME = "zed_right_camera_optical_frame"
THERMAL_FRAME = "boson_optical_frame"

#: Synchronised inputs the node knows; the left image is the clock of every set.
INPUT_KEYS = ("left", "right", "depth", "disparity", "thermal")
#: Inputs whose stamps a simulator jitters around the left stamp, and those it may drop.
JITTERED = ("right", "depth", "disparity", "thermal")
DROPPABLE = ("left",) + JITTERED

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DISPARITY_IMAGE = "stereo_msgs/msg/DisparityImage"
STRING = "std_msgs/msg/String"
#: Message type of each synchronised input.
INPUT_MSGTYPES: dict[str, str] = {key: DISPARITY_IMAGE if key == "disparity" else IMAGE for key in INPUT_KEYS}

#: Encodings each synchronised input accepts (colour: those `image_codec.to_rgb8` gives a meaning to).
INPUT_ENCODINGS: dict[str, tuple[str, ...]] = {
    "left": ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1"),
    "right": ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1"),
    "depth": ("32FC1", "16UC1", "mono16"),
    "disparity": ("32FC1",),
    "thermal": ("mono16", "16UC1", "mono8", "8UC1"),
}


@dataclass
class Topics:
    """Input topics; defaults are the ZED ROS 2 wrapper v5 names and a FLIR Boson driver."""

    left: str = "/zed/zed_node/left/color/rect/image"
    right: str = "/zed/zed_node/right/color/rect/image"
    depth: str = "/zed/zed_node/depth/depth_registered"
    disparity: str = "/zed/zed_node/disparity/map"
    left_info: str = "/zed/zed_node/left/color/rect/camera_info"
    right_info: str = "/zed/zed_node/right/color/rect/camera_info"
    thermal: str = "/flir_boson/image_raw"


# -- writing: plain field values ------------------------------------------------------------------------------------
@dataclass
class ImageFields:
    """sensor_msgs/Image without its header: unpadded, host byte order, `data` a 1-D uint8 array."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def image_fields(array: np.ndarray, encoding: str) -> ImageFields:
    """The Image fields holding `array` (its dtype must match `encoding`)."""
    step, data = encode_image(array, encoding)
    return ImageFields(int(array.shape[0]), int(array.shape[1]), encoding, int(NATIVE_IS_BIGENDIAN), int(step),
                       np.ascontiguousarray(data))


@dataclass
class CameraInfoFields:
    """sensor_msgs/CameraInfo of a rectified camera, without header, binning and ROI (all zero)."""

    width: int
    height: int
    distortion_model: str
    d: list[float]
    k: list[float]
    r: list[float]
    p: list[float]


def camera_info_fields(intr: StereoIntrinsics, right: bool = False) -> CameraInfoFields:
    """CameraInfo of a rectified ZED-like camera; the right one carries Tx = -fx*B in P."""
    tx = -intr.fx * intr.baseline_m if right else 0.0
    return CameraInfoFields(
        width=int(intr.width), height=int(intr.height), distortion_model="plumb_bob", d=[0.0] * 5,
        k=[intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0],
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[intr.fx, 0.0, intr.cx, tx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0])


@dataclass
class SensorImage:
    """One sensor's image as the car sends it: key, frame id, encoding, pixels (+ f, T of a DisparityImage)."""

    key: str
    frame_id: str
    encoding: str
    array: np.ndarray
    f: float = 0.0
    t: float = 0.0

    @property
    def fields(self) -> ImageFields:
        return image_fields(self.array, self.encoding)


@dataclass
class SceneMessages:
    """A synthetic scene as the ZED + Boson (+ ground truth) would send it, before any message library."""

    images: dict[str, SensorImage]  # left, right, depth, thermal, labels, pothole_ids, disparity when asked for
    intrinsics: StereoIntrinsics
    left_frame: str


def scene_messages(scene: Any, with_disparity: bool, with_right: bool = True) -> SceneMessages:
    """Encode a `synthetic.SyntheticScene` as the sensors do: bgra8 colour, 32FC1 depth in metres (NaN holes),
    mono16 thermal counts, optional 32FC1 DisparityImage with f and T, mono8 ground truth, mono16 pothole ids."""
    from road_seg_core.depth import depth_to_disparity

    f = scene.frame
    left_frame = f.frame_id or LEFT_FRAME
    images = {"left": SensorImage("left", left_frame, "bgra8", cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGRA))}
    if with_right:
        images["right"] = SensorImage("right", RIGHT_FRAME, "bgra8", cv2.cvtColor(f.right_rgb, cv2.COLOR_RGB2BGRA))
    images["depth"] = SensorImage("depth", left_frame, "32FC1", f.depth.astype(np.float32))
    if with_disparity:
        intr = f.intrinsics
        d = depth_to_disparity(np.nan_to_num(f.depth, nan=0.0), intr.fx, intr.baseline_m).astype(np.float32)
        images["disparity"] = SensorImage("disparity", left_frame, "32FC1", d, float(intr.fx), float(intr.baseline_m))
    images["thermal"] = SensorImage("thermal", THERMAL_FRAME, "mono16", f.thermal.astype(np.uint16))
    images["labels"] = SensorImage("labels", left_frame, "mono8", scene.labels)
    ids = f.extras.get("pothole_ids")
    if ids is not None:
        images["pothole_ids"] = SensorImage("pothole_ids", left_frame, "mono16", ids.astype(np.uint16, copy=False))
    return SceneMessages(images, f.intrinsics, left_frame)


def jitter_ns(rng: np.random.Generator, jitter_ms: float) -> int:
    """A stamp offset drawn from N(0, jitter_ms) (no draw at all for 0, so seeded streams stay comparable)."""
    return int(rng.normal(0.0, jitter_ms / 1e3) * 1e9) if jitter_ms > 0 else 0


# -- reading: duck-typed over rclpy and rosbags messages ---------------------------------------------------------
def stamp_ns(msg_or_header: Any) -> int:
    """Nanoseconds of a message's header stamp (or of a header's)."""
    hdr = getattr(msg_or_header, "header", msg_or_header)
    return int(hdr.stamp.sec) * NS_PER_S + int(hdr.stamp.nanosec)


class CameraInfoError(ValueError):
    """camera_info that cannot give stereo intrinsics (fx <= 0, NaN, inf, no baseline)."""


def check_camera_info(info: Any, right: bool = False) -> None:
    """Refuse a rectified CameraInfo the node cannot use (CameraInfoError naming the field and value)."""
    p = np.asarray(info.p, dtype=np.float64).reshape(-1)
    if p.size != 12 or not np.all(np.isfinite(p)):
        raise CameraInfoError(f"projection matrix P must be 12 finite values, got {list(p)}")
    if not p[0] > 0 or not p[5] > 0:
        raise CameraInfoError(f"projection matrix has fx={p[0]}, fy={p[5]}; expected > 0")
    if int(info.width) <= 0 or int(info.height) <= 0:
        raise CameraInfoError(f"camera_info size {info.width}x{info.height}; expected > 0")
    if right and not (-p[3] / p[0] > 0 and math.isfinite(-p[3] / p[0])):
        raise CameraInfoError(f"right projection matrix Tx={p[3]} gives no baseline; expected Tx = -fx*B < 0")


def intrinsics_from_camera_info(left: Any, right: Any) -> StereoIntrinsics:
    """Stereo intrinsics from rectified left/right CameraInfo (baseline from the right P's Tx = -fx*B)."""
    check_camera_info(left)
    check_camera_info(right, right=True)
    return StereoIntrinsics.from_projection(left.p, right.p, int(left.width), int(left.height))


def disparity_intrinsics(f: float, t: float, width: int, height: int) -> StereoIntrinsics | None:
    """Intrinsics a stereo_msgs/DisparityImage implies (focal f px, baseline t m); None if it leaves them unset."""
    if not (f > 0 and t > 0 and math.isfinite(f) and math.isfinite(t)):
        return None
    return StereoIntrinsics(fx=float(f), fy=float(f), cx=width / 2.0, cy=height / 2.0, baseline_m=float(t),
                            width=int(width), height=int(height))
