"""Decoded sensor messages -> one `SensorFrame`: shared by perception_node and `road-seg eval-bag`.

ROS-free on purpose: inputs are a header's fields (stamp, frame_id), the
encoding and the decoded array, so the node (rclpy messages) and the bag
evaluator (rosbags messages), both through road_seg_core.reception, check
encodings, register sizes and convert units in exactly one way, and what is
measured offline is what runs on the car.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from road_seg_core.frames import SensorFrame, StereoIntrinsics
from road_seg_core.image_codec import check_colour, to_metres, to_rgb8
from road_seg_core.input_plan import InputRejected
from road_seg_core.sensor_spec import INPUT_ENCODINGS


@dataclass
class DecodedInput:
    """One received input: its header fields, encoding and decoded pixels (image_codec.decode_image)."""

    stamp_ns: int
    frame_id: str
    encoding: str
    array: np.ndarray
    intrinsics: StereoIntrinsics | None = None  # a DisparityImage carries its own f and T


def check_encoding(key: str, encoding: str, topic: str = "") -> None:
    """Refuse, at reception, an encoding that cannot serve as input `key` (InputRejected, reason unsupported_encoding)."""
    allowed = INPUT_ENCODINGS[key]
    if encoding not in allowed:
        raise InputRejected(topic or key, "unsupported_encoding", f"encoding {encoding!r} is not usable as {key} "
                            f"input (expected one of {', '.join(allowed)})")


def assemble_frame(inputs: Mapping[str, DecodedInput], topics: Mapping[str, str],
                   camera_intrinsics: StereoIntrinsics | None = None,
                   needs_camera_info: bool = False) -> SensorFrame:
    """The SensorFrame of one synchronised set, stamped with the left image's header.

    Raises InputRejected (unregistrable_size, missing_camera_info) or
    ImageFormatError (a colour/depth conversion refused) for a set that cannot be used.

    Args:
        inputs: by input key ('left' required; 'right', 'depth', 'disparity', 'thermal' optional).
        topics: input key -> topic name, for error messages ('left_info' names the camera_info topic).
        camera_intrinsics: from the latest left/right camera_info (at their own resolution; scaled here).
        needs_camera_info: the configured depth source needs them (depth <-> disparity conversion); without it
            the intrinsics are attached when given (the road-plane fit uses them) and the frame goes on without.
    """
    left = inputs["left"]
    # Checked now, converted to RGB only if somebody needs it at full size (preprocessing resizes it as it is).
    check_colour(left.array, left.encoding)
    frame = SensorFrame.from_colour(left.array, left.encoding, stamp_ns=int(left.stamp_ns), frame_id=left.frame_id)
    h, w = frame.size
    if "right" in inputs:
        right = inputs["right"]
        require_registrable(topics.get("right", "right"), right.array.shape[:2], (h, w), exact=True)
        frame.right_rgb = to_rgb8(right.array, right.encoding)
    if "depth" in inputs:
        d = inputs["depth"]
        require_registrable(topics.get("depth", "depth"), d.array.shape[:2], (h, w))
        frame.depth = to_metres(d.array, d.encoding)
    if "disparity" in inputs:
        d = inputs["disparity"]
        require_registrable(topics.get("disparity", "disparity"), d.array.shape[:2], (h, w))
        frame.disparity = np.asarray(d.array, np.float32)
        frame.intrinsics = d.intrinsics.scaled(w, h) if d.intrinsics else None
    if "thermal" in inputs:
        frame.thermal = inputs["thermal"].array
    if needs_camera_info and camera_intrinsics is None:
        raise InputRejected(topics.get("left_info", "left_info"), "missing_camera_info",
                            "no camera_info received yet on topics.left_info / topics.right_info; needed to "
                            "convert between depth and disparity")
    if camera_intrinsics is not None:
        frame.intrinsics = camera_intrinsics.scaled(w, h)
    return frame


def require_registrable(topic: str, size: tuple[int, int], left: tuple[int, int], exact: bool = False) -> None:
    """Images must register onto the left image: same size (stereo pair) or the same aspect ratio (depth)."""
    ok = size == left if exact else abs(size[1] / size[0] - left[1] / left[0]) < 0.01 * left[1] / left[0]
    if not ok:
        raise InputRejected(topic, "unregistrable_size", f"{size[1]}x{size[0]} cannot be registered to the left "
                                                         f"image {left[1]}x{left[0]}")
