"""sensor_msgs <-> numpy, over road_seg_core's codec (or ROS 2 cv_bridge where it is installed).

The node validates every image here, at reception: a message that cannot be
decoded is rejected with a reason before it reaches the synchroniser.
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from road_seg_core.frames import StereoIntrinsics
from road_seg_core.image_codec import ImageFormatError, decode_image, encode_image

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
    step, buf = encode_image(image, encoding)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    data = array.array("B")
    data.frombytes(buf.data if buf.flags.c_contiguous else buf.tobytes())
    msg.data = data
    return msg


def intrinsics_from_camera_info(left: CameraInfo, right: CameraInfo) -> StereoIntrinsics:
    """Stereo intrinsics from the rectified left/right CameraInfo (baseline from the right P's Tx = -fx*B)."""
    return StereoIntrinsics.from_projection(left.p, right.p, left.width, left.height)


def camera_info(intr: StereoIntrinsics, header: Header, right: bool = False) -> CameraInfo:
    """CameraInfo of a rectified ZED-like camera (the right one carries Tx = -fx*B)."""
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = intr.width, intr.height
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    tx = -intr.fx * intr.baseline_m if right else 0.0
    msg.p = [intr.fx, 0.0, intr.cx, tx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg
