"""ROS 2 Jazzy messages as the `rosbags` typestore defines them: build, serialise and decode, without rclpy.

The typestore's definitions hash (RIHS01) to the same values as Jazzy's own
interfaces, so bags written with them play with `ros2 bag play` and read back in
rclpy unchanged.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.typesys import Stores, get_typestore

from road_seg_core.frames import StereoIntrinsics
from road_seg_core.image_codec import NATIVE_IS_BIGENDIAN, decode_image, encode_image
from road_seg_ros.frame_assembly import DecodedInput, disparity_intrinsics

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DISPARITY_IMAGE = "stereo_msgs/msg/DisparityImage"
STRING = "std_msgs/msg/String"

_T = TYPESTORE.types
NS_PER_S = 1_000_000_000


def offered_qos(reliable: bool = True, depth: int = 5) -> Qos:
    """An offered QoS profile for a recorded topic (`ros2 bag play` re-offers it)."""
    zero = QosTime(0, 0)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth,
               reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               durability=QosDurability.VOLATILE, deadline=zero, lifespan=zero,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=zero,
               avoid_ros_namespace_conventions=False)


def header(stamp_ns: int, frame_id: str) -> Any:
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return _T["std_msgs/msg/Header"](stamp=_T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                     frame_id=frame_id)


def stamp_ns(hdr: Any) -> int:
    return int(hdr.stamp.sec) * NS_PER_S + int(hdr.stamp.nanosec)


def image(array: np.ndarray, encoding: str, stamp: int, frame_id: str) -> Any:
    """sensor_msgs/Image holding `array` (dtype must match `encoding`), unpadded, host byte order."""
    step, data = encode_image(array, encoding)
    return _T[IMAGE](header=header(stamp, frame_id), height=int(array.shape[0]), width=int(array.shape[1]),
                     encoding=encoding, is_bigendian=int(NATIVE_IS_BIGENDIAN), step=int(step),
                     data=np.ascontiguousarray(data))


def camera_info(intr: StereoIntrinsics, stamp: int, frame_id: str, right: bool = False) -> Any:
    """CameraInfo of a rectified camera; the right one carries Tx = -fx*B (as conversions.camera_info)."""
    tx = -intr.fx * intr.baseline_m if right else 0.0
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _T[CAMERA_INFO](
        header=header(stamp, frame_id), height=int(intr.height), width=int(intr.width),
        distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]),
        r=np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]),
        p=np.array([intr.fx, 0.0, intr.cx, tx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0, binning_y=0, roi=roi)


def disparity_image(disparity: np.ndarray, f: float, t: float, stamp: int, frame_id: str) -> Any:
    """stereo_msgs/DisparityImage as sim_sensors fills it (32FC1 pixels, f and T set, delta_d 1/16)."""
    img = image(disparity.astype(np.float32, copy=False), "32FC1", stamp, frame_id)
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _T[DISPARITY_IMAGE](header=img.header, image=img, f=float(f), t=float(t), valid_window=roi,
                               min_disparity=0.0, max_disparity=float(np.max(disparity)) if disparity.size else 0.0,
                               delta_d=1.0 / 16)


def string(text: str) -> Any:
    return _T[STRING](data=text)


def serialize(msg: Any) -> bytes:
    return TYPESTORE.serialize_cdr(msg, msg.__msgtype__)


def deserialize(raw: bytes | memoryview, msgtype: str) -> Any:
    return TYPESTORE.deserialize_cdr(raw, msgtype)


def decode(msg: Any) -> DecodedInput:
    """An Image or DisparityImage -> the decoded input frame assembly takes (raises ImageFormatError)."""
    if msg.__msgtype__ == DISPARITY_IMAGE:
        img = msg.image
        intr = disparity_intrinsics(msg.f, msg.t, int(img.width), int(img.height))
        return DecodedInput(stamp_ns(msg.header), msg.header.frame_id, img.encoding, image_array(img), intr)
    return DecodedInput(stamp_ns(msg.header), msg.header.frame_id, msg.encoding, image_array(msg))


def image_array(msg: Any) -> np.ndarray:
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


def intrinsics(left_info: Any, right_info: Any) -> StereoIntrinsics:
    """Stereo intrinsics from rectified left/right CameraInfo (as conversions.intrinsics_from_camera_info)."""
    return StereoIntrinsics.from_projection(left_info.p, right_info.p, int(left_info.width), int(left_info.height))
