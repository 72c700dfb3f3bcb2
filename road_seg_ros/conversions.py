"""rclpy messages <-> numpy: the rclpy adapter of road_seg_core.sensor_spec (cv_bridge where installed).

Field values come from `sensor_spec` (shared with the rosbags adapter,
road_seg_core.bag.msgs); this module only copies them into rclpy message
objects, and decodes pixels for the node's reception path (`image_to_array`).
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from road_seg_core.frames import StereoIntrinsics
from road_seg_core.image_codec import ImageFormatError, decode_image
from road_seg_core.sensor_spec import SensorImage, camera_info_fields, image_fields

try:  # ROS 2 cv_bridge on a ROS install; the PyPI "cv-bridge" is ROS 1's and is not used.
    from cv_bridge import CvBridge, CvBridgeError  # type: ignore

    _BRIDGE: "CvBridge | None" = CvBridge()
except ImportError:  # pragma: no cover - depends on the machine
    _BRIDGE = None
    CvBridgeError = ImageFormatError  # type: ignore


def cv_bridge_available() -> bool:
    return _BRIDGE is not None


def image_to_array(msg: Image, use_cv_bridge: bool = True) -> np.ndarray:
    """Decode an Image to (H, W) or (H, W, C) in its encoding's dtype; raises ImageFormatError with a reason."""
    if use_cv_bridge and _BRIDGE is not None:
        try:
            return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough")
        except (CvBridgeError, TypeError, ValueError):
            pass  # fall through to our decoder, whose error names the reason precisely
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


def array_to_image(image: np.ndarray, encoding: str, header: Header) -> Image:
    """Build an Image message; `data` is filled as array.array, the fast path for rclpy."""
    f = image_fields(image, encoding)
    msg = Image()
    msg.header = header
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = f.height, f.width, f.encoding, \
        f.is_bigendian, f.step
    data = array.array("B")
    data.frombytes(f.data.data)
    msg.data = data
    return msg


def sensor_image_message(sensor: SensorImage, header: Header) -> Image | DisparityImage:
    """The rclpy Image (or DisparityImage) of one `sensor_spec.SensorImage`."""
    image = array_to_image(sensor.array, sensor.encoding, header)
    if sensor.key != "disparity":
        return image
    msg = DisparityImage()
    msg.header, msg.image, msg.f, msg.t = header, image, float(sensor.f), float(sensor.t)
    msg.min_disparity = 0.0
    msg.max_disparity = float(np.max(sensor.array)) if sensor.array.size else 0.0
    msg.delta_d = 1.0 / 16
    return msg


def camera_info(intr: StereoIntrinsics, header: Header, right: bool = False) -> CameraInfo:
    """CameraInfo of a rectified ZED-like camera (`sensor_spec.camera_info_fields`)."""
    f = camera_info_fields(intr, right)
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height, msg.distortion_model = f.width, f.height, f.distortion_model
    msg.d, msg.k, msg.r, msg.p = f.d, f.k, f.r, f.p
    return msg
