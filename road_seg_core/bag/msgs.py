"""ROS 2 Jazzy messages as the `rosbags` typestore defines them: build, serialise and decode, without rclpy.

The field values come from `road_seg_core.sensor_spec` (the one definition the
rclpy side, road_seg_ros.conversions, uses too); this module only copies them
into rosbags message objects. The typestore's definitions hash (RIHS01) to the
same values as Jazzy's own interfaces, so bags written with them play with
`ros2 bag play` and read back in rclpy unchanged.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.typesys import Stores, get_typestore

from road_seg_core.frames import StereoIntrinsics
from road_seg_core.sensor_spec import CAMERA_INFO, DISPARITY_IMAGE, IMAGE, NS_PER_S, STRING, SensorImage, \
    camera_info_fields, image_fields

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_T = TYPESTORE.types

__all__ = ["CAMERA_INFO", "DISPARITY_IMAGE", "IMAGE", "STRING", "TYPESTORE", "camera_info", "deserialize",
           "disparity_image", "header", "image", "offered_qos", "sensor_image", "serialize", "string"]


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


def image(array: np.ndarray, encoding: str, stamp: int, frame_id: str) -> Any:
    """sensor_msgs/Image holding `array` (dtype must match `encoding`), unpadded, host byte order."""
    f = image_fields(array, encoding)
    return _T[IMAGE](header=header(stamp, frame_id), height=f.height, width=f.width, encoding=f.encoding,
                     is_bigendian=f.is_bigendian, step=f.step, data=f.data)


def _roi() -> Any:
    return _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)


def camera_info(intr: StereoIntrinsics, stamp: int, frame_id: str, right: bool = False) -> Any:
    """CameraInfo of a rectified camera (`sensor_spec.camera_info_fields`)."""
    f = camera_info_fields(intr, right)
    return _T[CAMERA_INFO](header=header(stamp, frame_id), height=f.height, width=f.width,
                           distortion_model=f.distortion_model, d=np.array(f.d), k=np.array(f.k), r=np.array(f.r),
                           p=np.array(f.p), binning_x=0, binning_y=0, roi=_roi())


def disparity_image(disparity: np.ndarray, f: float, t: float, stamp: int, frame_id: str) -> Any:
    """stereo_msgs/DisparityImage as sim_sensors fills it (32FC1 pixels, f and T set, delta_d 1/16)."""
    img = image(disparity.astype(np.float32, copy=False), "32FC1", stamp, frame_id)
    return _T[DISPARITY_IMAGE](header=img.header, image=img, f=float(f), t=float(t), valid_window=_roi(),
                               min_disparity=0.0, max_disparity=float(np.max(disparity)) if disparity.size else 0.0,
                               delta_d=1.0 / 16)


def sensor_image(sensor: SensorImage, stamp: int) -> Any:
    """The Image (or DisparityImage) carrying one `sensor_spec.SensorImage` at `stamp`."""
    if sensor.key == "disparity":
        return disparity_image(sensor.array, sensor.f, sensor.t, stamp, sensor.frame_id)
    return image(sensor.array, sensor.encoding, stamp, sensor.frame_id)


def string(text: str) -> Any:
    return _T[STRING](data=text)


def serialize(msg: Any) -> bytes:
    return TYPESTORE.serialize_cdr(msg, msg.__msgtype__)


def deserialize(raw: bytes | memoryview, msgtype: str) -> Any:
    return TYPESTORE.deserialize_cdr(raw, msgtype)
